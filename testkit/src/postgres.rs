//! A real PostgreSQL (15 or later) server as a peer, on 127.0.0.1.
//!
//! [`Postgres::start`] makes a temporary directory, runs `initdb` in it
//! (superuser `postgres`, `trust` authentication, UTF-8, the `C.UTF-8`
//! locale), starts the `postgres` binary itself as a [`Peer`] on a free
//! port, listening on 127.0.0.1 only with its Unix socket inside the
//! temporary directory, waits until a `psql` query succeeds, and creates the
//! database `glasswatch`. Durability is switched off (`fsync`,
//! `synchronous_commit` and `full_page_writes`), since a test's data need not
//! survive a machine crash; it does survive [`Postgres::stop`] and
//! [`Postgres::start_again`], which restart the server on the same data
//! directory and port, for outage tests.
//!
//! PostgreSQL refuses to run as root, and CI runs tests as root. As root,
//! the server and `initdb` therefore run as the system user
//! `glasswatch-test`, created with `useradd` the first time it is needed;
//! the privileges are dropped in the child between fork and exec (no
//! `runuser` in between, which would fork again), so the PID the guard
//! signals is the postmaster's own. Run as anyone else, everything runs as
//! that user.
//!
//! [`Postgres::stop`] is a fast shutdown (SIGINT: clients are disconnected,
//! a checkpoint is written), with SIGKILL after a grace period; dropping the
//! guard does the same and then removes the directory. `pg_ctl`, the
//! Debian cluster tools (`pg_ctlcluster`) and the system's own PostgreSQL
//! service are never used or touched. The server has no password, no TLS and
//! no replication; the URL from [`Postgres::url`] is for a local test only.
//!
//! [`require_postgres`] applies the [`require`](mod@crate::require) policy
//! to the server binaries and `psql` (Debian: `postgresql-15`,
//! `postgresql-client-15`).

use std::{
    ffi::CString,
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _};

use crate::peer::{Peer, Ready};
use crate::ports::{free_port, loopback};
use crate::process::{run_with_timeout, tail};
use crate::require::{find_program, require};

/// The system user the server runs as when the tests run as root.
pub const TEST_USER: &str = "glasswatch-test";

/// The database [`Postgres::start`] creates, named in [`Postgres::url`].
pub const DATABASE: &str = "glasswatch";

/// The lowest PostgreSQL major version accepted.
const MIN_MAJOR: u32 = 15;

/// Where Debian 12 puts PostgreSQL 15's server binaries.
const DEBIAN_BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// What to install when PostgreSQL is missing.
const INSTALL_HINT: &str = "install it with `apt-get install postgresql-15 postgresql-client-15`";

/// How long `initdb` may take.
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the server may take until it answers queries.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long one `psql` run may take.
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long creating [`TEST_USER`] may take, racing other tests.
const USERADD_TIMEOUT: Duration = Duration::from_secs(30);
/// The lock test processes take to create [`TEST_USER`] one at a time.
const USERADD_LOCK: &str = "/tmp/glasswatch-test-useradd.lock";

/// A running PostgreSQL server on 127.0.0.1, shut down and deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    /// The postmaster, while running. Declared before `dir` so it stops first.
    peer: Option<Peer>,
    port: u16,
    /// Holds `initdb`, `postgres` and usually `psql`.
    bindir: PathBuf,
    psql: PathBuf,
    /// The `(uid, gid)` the server runs as, when the tests run as root.
    owner: Option<(u32, u32)>,
    opts: PgOptions,
    /// The server's certificate and key and the CA, with [`PgOptions::tls`].
    tls: Option<crate::tls::TlsFiles>,
    /// `data/` (the cluster) and `socket/` (the Unix socket).
    dir: tempfile::TempDir,
}

/// How a server is set up.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// Serve TLS too (`ssl=on`) with a fresh test CA ([`Postgres::ca_file`]).
    pub tls: bool,
    /// Require this password of `postgres` over TCP (SCRAM); `trust` otherwise.
    pub password: Option<String>,
}

impl Postgres {
    /// Creates a fresh cluster, starts the server on a free port of
    /// 127.0.0.1, waits until it answers queries and creates the database
    /// [`DATABASE`].
    pub fn start() -> anyhow::Result<Postgres> {
        Postgres::start_with(PgOptions::default())
    }

    /// Like [`Postgres::start`], set up as `opts` says.
    pub fn start_with(opts: PgOptions) -> anyhow::Result<Postgres> {
        let bindir = find_bindir().map_err(|why| anyhow!("PostgreSQL: {why}; {INSTALL_HINT}"))?;
        let psql = find_psql(&bindir)
            .ok_or_else(|| anyhow!("PostgreSQL: psql not found; {INSTALL_HINT}"))?;
        let owner = if is_root() {
            Some(ensure_test_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("glasswatch-postgres-")
            .tempdir()
            .context("creating PostgreSQL's directory")?;
        let socket = dir.path().join("socket");
        fs::create_dir(&socket).with_context(|| format!("creating {}", socket.display()))?;
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), socket.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).with_context(|| {
                    format!("handing {} to {TEST_USER} ({uid}:{gid})", path.display())
                })?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("chmod 0700 {}", path.display()))?;
            }
        }
        let tls = if opts.tls {
            let files = crate::tls::make_test_ca(dir.path())?;
            // The server reads its key only if its user owns it, mode 0600.
            for f in [&files.cert, &files.key] {
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(f, Some(uid), Some(gid))
                        .with_context(|| format!("handing {} to {TEST_USER}", f.display()))?;
                }
                fs::set_permissions(f, fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("chmod 0600 {}", f.display()))?;
            }
            Some(files)
        } else {
            None
        };
        let mut pg = Postgres {
            peer: None,
            port: free_port(),
            bindir,
            psql,
            owner,
            opts,
            tls,
            dir,
        };
        pg.initdb()?;
        pg.launch()?;
        pg.psql_in("postgres", &format!("CREATE DATABASE {DATABASE}"))
            .context("creating the test database")?;
        Ok(pg)
    }

    /// Starts the server again on the same data directory and port, after
    /// [`Postgres::stop`], and waits until it answers queries.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if let Some(peer) = &mut self.peer {
            if peer.is_running() {
                bail!(
                    "PostgreSQL on 127.0.0.1:{} (pid {}) is already running",
                    self.port,
                    peer.pid()
                );
            }
        }
        self.peer = None;
        self.launch()
    }

    /// Stops the server with a fast shutdown (SIGINT: sessions are
    /// disconnected, a checkpoint is written) and waits for it to exit. If
    /// it has not exited after 15 s it is killed with SIGKILL, and an error
    /// says so. Stopping a stopped server does nothing.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut peer) = self.peer.take() else {
            return Ok(());
        };
        peer.signal(libc::SIGINT)?;
        if let Err(e) = peer.wait_timeout(STOP_GRACE) {
            peer.kill()?;
            return Err(e.context(format!(
                "PostgreSQL on 127.0.0.1:{} ignored a fast shutdown for {STOP_GRACE:?}; killed",
                self.port
            )));
        }
        Ok(())
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.peer.as_mut().is_some_and(Peer::is_running)
    }

    /// The server's port on 127.0.0.1 (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/glasswatch` (no password in it:
    /// `trust`, or [`PgOptions::password`] given separately).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The CA that signed the server's certificate, with [`PgOptions::tls`].
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca.as_path())
    }

    /// Runs `sql` in the database [`DATABASE`] with `psql -At` (unaligned,
    /// rows only, `|` between columns, one row a line, stopping at the first
    /// error) and returns its stdout without the final newline. A failing
    /// statement, a refused connection or a run over 30 s is an error
    /// carrying psql's stderr and the server log's tail.
    pub fn psql(&self, sql: &str) -> anyhow::Result<String> {
        self.psql_in(DATABASE, sql)
    }

    /// Like [`Postgres::psql`], in the database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let mut cmd = Command::new(&self.psql);
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-U", "postgres", "-d", db, "-c", sql])
        // Fail fast while the server is down; ignore the caller's settings.
        .env("PGCONNECT_TIMEOUT", "5")
        .env(
            "PGPASSWORD",
            self.opts.password.as_deref().unwrap_or_default(),
        )
        .env_remove("PGOPTIONS")
        .env_remove("PGSERVICE")
        .env_remove("PGSERVICEFILE");
        let out = run_with_timeout(&mut cmd, PSQL_TIMEOUT).with_context(|| {
            format!(
                "psql on 127.0.0.1:{} ({sql:?}); server log:\n{}",
                self.port,
                self.log_tail()
            )
        })?;
        if !out.status.success() {
            bail!(
                "psql on 127.0.0.1:{} failed ({}) for {sql:?}:\n{}\nserver log:\n{}",
                self.port,
                out.status,
                tail(&out.stderr),
                self.log_tail()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
    }

    /// The temporary directory (`data/` is the cluster, `socket/` the Unix socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of the running server's log (empty while stopped).
    pub fn log_tail(&self) -> String {
        self.peer.as_ref().map(Peer::log_tail).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `cmd` as the server's user: [`TEST_USER`] as root, else unchanged.
    fn as_owner(&self, cmd: &mut Command) {
        cmd.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            // std sets the group, drops supplementary groups and sets the
            // user in the child before exec, so no extra process sits between.
            cmd.uid(uid)
                .gid(gid)
                .env("HOME", self.dir.path())
                .env("USER", TEST_USER)
                .env("LOGNAME", TEST_USER);
        }
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.bindir.join("initdb"));
        if let Some(password) = &self.opts.password {
            let file = self.dir.path().join("pwfile");
            fs::write(&file, format!("{password}\n"))
                .with_context(|| format!("writing {}", file.display()))?;
            if let Some((uid, gid)) = self.owner {
                std::os::unix::fs::chown(&file, Some(uid), Some(gid))
                    .with_context(|| format!("handing {} to {TEST_USER}", file.display()))?;
            }
            cmd.arg(format!("--pwfile={}", file.display()))
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
        } else {
            cmd.arg("--auth=trust");
        }
        cmd.arg("-D").arg(self.data_dir()).args([
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            "--no-instructions",
        ]);
        self.as_owner(&mut cmd);
        let out = run_with_timeout(&mut cmd, INITDB_TIMEOUT).context("PostgreSQL initdb")?;
        if !out.status.success() {
            bail!(
                "PostgreSQL initdb failed ({}) in {}:\n{}{}",
                out.status,
                self.data_dir().display(),
                tail(&out.stdout),
                tail(&out.stderr)
            );
        }
        Ok(())
    }

    /// Spawns the postmaster and waits until it accepts TCP connections and
    /// answers `SELECT 1`.
    fn launch(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loopback(self.port);
        let peer = loop {
            let mut cmd = Command::new(self.bindir.join("postgres"));
            cmd.arg("-D")
                .arg(self.data_dir())
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-k")
                .arg(self.dir.path().join("socket"))
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ]);
            if let Some(tls) = &self.tls {
                cmd.args(["-c", "ssl=on", "-c"])
                    .arg(format!("ssl_cert_file={}", tls.cert.display()))
                    .arg("-c")
                    .arg(format!("ssl_key_file={}", tls.key.display()));
            }
            self.as_owner(&mut cmd);
            let left = deadline.saturating_duration_since(Instant::now());
            match Peer::spawn("postgres", cmd, Ready::Tcp(addr), left) {
                Ok(peer) => break peer,
                // After a SIGKILL, the old server's backends may hold the
                // shared memory a moment longer; the new one refuses to start.
                Err(e)
                    if format!("{e:#}").contains("pre-existing shared memory block")
                        && Instant::now() + Duration::from_millis(500) < deadline =>
                {
                    thread::sleep(Duration::from_millis(300));
                }
                Err(e) => {
                    return Err(e.context(format!("starting PostgreSQL on {addr}")));
                }
            }
        };
        self.peer = Some(peer);
        // Accepting TCP comes before recovery ends ("the database system is
        // starting up"); ready means a query succeeds.
        loop {
            let err = match self.psql_in("postgres", "SELECT 1") {
                Ok(out) if out == "1" => return Ok(()),
                Ok(out) => anyhow!("SELECT 1 returned {out:?}"),
                Err(e) => e,
            };
            if let Some(peer) = self.peer.as_mut() {
                if let Some(status) = peer.try_wait()? {
                    bail!(
                        "PostgreSQL on {addr} (pid {}) exited with {status} while starting; log {}:\n{}",
                        peer.pid(),
                        peer.log_path().display(),
                        peer.log_tail()
                    );
                }
            }
            if Instant::now() >= deadline {
                return Err(err.context(format!(
                    "PostgreSQL on {addr} does not answer queries after {START_TIMEOUT:?}"
                )));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A fast shutdown first, so no backend outlives the directory and no
        // shared memory segment is left behind; the guard kills it otherwise.
        if let Err(e) = self.stop() {
            eprintln!("PostgreSQL on 127.0.0.1:{}: {e:#}", self.port);
        }
    }
}

/// Requires PostgreSQL 15 or later (`initdb` and `postgres`) and `psql`,
/// under the [`require`] policy.
///
/// # Panics
///
/// Under CI, when either is missing.
pub fn require_postgres() -> bool {
    require(
        "PostgreSQL >= 15 (apt: postgresql-15 postgresql-client-15)",
        || {
            let bindir = find_bindir().map_err(|why| format!("{why}; {INSTALL_HINT}"))?;
            find_psql(&bindir).map(|_| ()).ok_or_else(|| {
                format!(
                    "psql is neither in {} nor on PATH; {INSTALL_HINT}",
                    bindir.display()
                )
            })
        },
    )
}

/// The directory holding `initdb` and `postgres` of PostgreSQL 15 or later:
/// Debian's PostgreSQL 15, else `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin`. `Err` says where it looked.
pub fn find_bindir() -> Result<PathBuf, String> {
    let debian = Path::new(DEBIAN_BINDIR);
    if has_server(debian) {
        return Ok(debian.to_owned());
    }
    if let Some(pg_config) = find_program("pg_config") {
        let out = run_with_timeout(
            Command::new(pg_config).arg("--bindir"),
            Duration::from_secs(10),
        );
        let bindir = out.ok().filter(|o| o.status.success());
        if let Some(out) = bindir {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server(&dir) && server_major(&dir).is_some_and(|m| m >= MIN_MAJOR) {
                return Ok(dir);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = e.path().join("bin");
            (major >= MIN_MAJOR && has_server(&dir)).then_some((major, dir))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, dir)| dir).ok_or_else(|| {
        format!(
            "no PostgreSQL >= {MIN_MAJOR} server (initdb, postgres) in {DEBIAN_BINDIR}, \
             `pg_config --bindir` or /usr/lib/postgresql/*/bin"
        )
    })
}

/// `psql` next to the server binaries, else on `PATH`.
fn find_psql(bindir: &Path) -> Option<PathBuf> {
    let local = bindir.join("psql");
    if is_executable(&local) {
        return Some(local);
    }
    find_program("psql")
}

fn has_server(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The major version `postgres --version` in `dir` reports.
fn server_major(dir: &Path) -> Option<u32> {
    let out = run_with_timeout(
        Command::new(dir.join("postgres")).arg("--version"),
        Duration::from_secs(10),
    )
    .ok()?;
    parse_major(&String::from_utf8_lossy(&out.stdout))
}

/// The major version in `postgres (PostgreSQL) 15.20 (Debian ...)`.
fn parse_major(version: &str) -> Option<u32> {
    let (_, rest) = version.split_once("(PostgreSQL)")?;
    let number = rest.split_whitespace().next()?;
    number
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The `(uid, gid)` of [`TEST_USER`], creating it as a system user (no
/// home, no shell) if missing.
///
/// `useradd` is not safe against itself: two runs that both find the name
/// free both write it, the second with another uid, so a process that read
/// the first uid would start PostgreSQL as a user that no longer exists.
/// Test processes therefore create the user under an exclusive lock on
/// [`USERADD_LOCK`] (threads of one process under a mutex as well), and look
/// it up again under that lock before running `useradd`.
fn ensure_test_user() -> anyhow::Result<(u32, u32)> {
    if let Some(ids) = lookup_user(TEST_USER)? {
        return Ok(ids);
    }
    static LOCK: Mutex<()> = Mutex::new(());
    let _threads = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let deadline = Instant::now() + USERADD_TIMEOUT;
    let _processes = lock_file(Path::new(USERADD_LOCK), deadline)?;
    let useradd = find_program("useradd").unwrap_or_else(|| PathBuf::from("/usr/sbin/useradd"));
    let mut last = String::from("(useradd not run)");
    loop {
        if let Some(ids) = lookup_user(TEST_USER)? {
            return Ok(ids);
        }
        if Instant::now() >= deadline {
            bail!(
                "PostgreSQL refuses to run as root and the user {TEST_USER} could not be \
                 created within {USERADD_TIMEOUT:?}; last useradd: {last}"
            );
        }
        let out = run_with_timeout(
            Command::new(&useradd).args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ]),
            Duration::from_secs(20),
        );
        match out {
            Ok(out) if out.status.success() => continue,
            // Exit 9 (name taken by someone outside these tests) is followed
            // by a successful look-up; 10 (passwd files locked) by a retry.
            Ok(out) => last = format!("{}: {}", out.status, tail(&out.stderr).trim()),
            Err(e) => last = format!("{e:#}"),
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Takes an exclusive `flock` on `path` (created if missing, never through a
/// symlink), retrying until `deadline`; the lock lasts as long as the file.
fn lock_file(path: &Path, deadline: Instant) -> anyhow::Result<fs::File> {
    use std::os::unix::{fs::OpenOptionsExt as _, io::AsRawFd as _};
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    loop {
        // SAFETY: flock(2) on a descriptor we own; no memory effects.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        if Instant::now() >= deadline {
            bail!("{} still locked by another test process", path.display());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The `(uid, gid)` of user `name`, or `None` if there is no such user.
fn lookup_user(name: &str) -> anyhow::Result<Option<(u32, u32)>> {
    let cname = CString::new(name).context("user name with a NUL byte")?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: passwd is plain data; getpwnam_r fills it with pointers into
        // `buf`, which outlives every use (only the ids are read, before
        // `buf` changes).
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf.len()` is its size.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc))
                .with_context(|| format!("looking up user {name}"));
        }
        return Ok((!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_major_version() {
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 17beta2"), Some(17));
        assert_eq!(parse_major("postgres (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("something else"), None);
    }

    #[test]
    fn looks_up_users() {
        assert_eq!(lookup_user("root").unwrap(), Some((0, 0)));
        assert_eq!(lookup_user("glasswatch-no-such-user").unwrap(), None);
    }
}
