//! HTTP/1.x framing of our own, on `httparse` (DESIGN.md §2: a proxy must not alter what it
//! does not need to read, and must see the connection it authenticates).
//!
//! - `head`: request and response heads, parsed with limits and re-emitted in order.
//! - `body`: message framing (RFC 9112 §6) and copying bodies through unchanged.
//! - `headers`: the header list, hop-by-hop removal and `Header` substitutions.

pub mod body;
pub mod head;
pub mod headers;

pub use body::{BodyError, BodyKind};
pub use head::{HeadError, HeadLimits, RequestHead, ResponseHead, Version};
pub use headers::{Header, Headers};
