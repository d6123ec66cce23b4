//! cntlm: a drop-in successor to CNTLM, the local proxy that authenticates to a corporate
//! parent proxy (NTLM, and more) on behalf of the applications on a laptop.
//!
//! Layout, one concern per module:
//! - `auth`: credentials and secrets; `auth::ntlm` is the NTLM engine.
//! - `config`: the resolved `Config` and the CNTLM config-file reader.
//! - `http`: HTTP/1.x heads, body framing and header edits.
//! - `proxy`: listeners, client sessions, forwarding, CONNECT (`run` lives here).
//! - `route`: DIRECT or parent, from NoProxy and the parent list.
//! - `upstream`: parent order and health, and the pool of authenticated connections.
//! - `cli`: CNTLM's command-line flags, validated into config settings.
//! - `daemon` (Unix): detaching, the `-P` pid file, `-U` privilege drop, syslog.
//! - `shutdown`: SIGTERM/SIGINT drain and SIGHUP reload, as state tasks can await.
//! - `socks5`: the SOCKS5 server side (RFC 1928 CONNECT, RFC 1929 user/pass) for `-O`.
//! - `tunnel`: `-L` port forwards and the SOCKS5 listener's connector (CONNECT via parents).
//! - `pac`: PAC evaluation (QuickJS engine thread, helpers, result parser, fetch, cache).
//! - `netwatch`: network-change detection (Linux netlink, elsewhere a poll) for roaming.
//! - `magic`: `-M`, the dialect detection against the parent.
//!
//! The library never reads argv, the environment or files on its own: `main.rs` resolves a
//! `Config` and hands it to `run`.

pub mod auth;
pub mod cli;
pub mod config;
#[cfg(unix)]
pub mod daemon;
pub mod http;
pub mod magic;
pub mod netwatch;
pub mod pac;
pub mod proxy;
pub mod route;
pub mod shutdown;
pub mod socks5;
pub mod tunnel;
pub mod upstream;

pub use proxy::run;
