//! The NTLM engine (MS-NLMP): key derivation, challenge responses and the three messages.
//!
//! - `crypto`: LMOWFv1, NTOWFv1, NTOWFv2 and every response dialect (§3.3).
//! - `hashes`: the `Pass*` hex text CNTLM reads and `-H` prints.

pub mod crypto;
pub mod hashes;
