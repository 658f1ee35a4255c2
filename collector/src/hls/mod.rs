//! Readers for HLS as MediaMTX (and classic origins) serve it: playlists
//! (classic and LL-HLS), fMP4 (init section and `moof`/`mdat` parts or
//! segments) and MPEG-TS segments. Each is a pure function over bytes that
//! returns the frames it finds (stamp, fingerprint) or a typed error with
//! the byte offset; none of them decodes video.

pub mod fmp4;
pub mod playlist;
pub mod ts;
