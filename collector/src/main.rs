//! glasswatch-collector: placeholder binary.
//!
//! The collector (MQTT ingest, HLS receiver, matching, storage, dashboard) is
//! built in a later issue. Until then this binary only says so, so that the
//! workspace layout fixed in DESIGN.md is complete and packaging can refer to it.

use clap::Parser;

/// Glasswatch collector (not yet implemented).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("glasswatch-collector is not implemented yet; see README.md for what runs today")
}
