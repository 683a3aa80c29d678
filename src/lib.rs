//! leadmail turns lead emails into routed, stored leads for real-estate
//! brokerages. The library is the pipeline `source -> parse -> route ->
//! store`; the binary (`src/main.rs`) is a thin command-line edge over it.
//! See ARCHITECTURE.md for the map.

pub mod admin;
pub mod config;
pub mod daemon;
pub mod http;
pub mod instance;
pub mod lead;
pub mod metrics;
pub mod notify;
pub mod offer;
pub mod parse;
pub mod pipeline;
pub mod route;
pub mod source;
pub mod store;
