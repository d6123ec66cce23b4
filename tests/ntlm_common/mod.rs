//! Shared helpers of the NTLM integration tests: the vector file, hex, the spec's
//! credentials, and the session-key algebra (MS-NLMP §3.4.5) the engine itself never needs
//! (a proxy client only authenticates) but the vectors include.

#![allow(dead_code)]

use std::sync::OnceLock;

use cntlm::auth::ntlm::crypto;
use cntlm::auth::{Credentials, Hash16, Password};
use md4::{Digest, Md4};
use md5::Md5;
use serde_json::Value;

/// The parsed `tests/data/ntlm-vectors.json`.
pub fn vectors() -> &'static Value {
    static VECTORS: OnceLock<Value> = OnceLock::new();
    VECTORS.get_or_init(|| {
        serde_json::from_str(include_str!("../data/ntlm-vectors.json"))
            .expect("the vector file is valid JSON")
    })
}

/// The value at a `/`-separated path (keys may contain spaces, never `/`).
pub fn at(path: &str) -> &'static Value {
    path.split('/').fold(vectors(), |v, key| {
        v.get(key)
            .unwrap_or_else(|| panic!("no {key} in vectors at {path}"))
    })
}

/// The string at `path`.
pub fn text(path: &str) -> &'static str {
    at(path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

/// The hex string at `path`, decoded.
pub fn bytes(path: &str) -> Vec<u8> {
    hex::decode(text(path)).unwrap_or_else(|e| panic!("{path} is not hex: {e}"))
}

/// The 8 bytes at `path`.
pub fn bytes8(path: &str) -> [u8; 8] {
    bytes(path).try_into().expect("an 8-byte value")
}

/// The 16-byte key at `path`.
pub fn hash16(path: &str) -> Hash16 {
    Hash16::new(bytes(path).try_into().expect("a 16-byte value"))
}

/// A `0x`-prefixed hex number at `path`.
pub fn number(path: &str) -> u32 {
    let t = text(path);
    u32::from_str_radix(t.trim_start_matches("0x"), 16).expect("a hex number")
}

/// Lower-case hex of `bytes`, for readable assertion failures.
pub fn hx(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(bytes)
}

/// User / Domain / Password / COMPUTER: MS-NLMP §4.2.1's inputs, also CNTLM's captures'.
pub fn spec_credentials() -> Credentials {
    Credentials {
        user: text("common_inputs/user").into(),
        domain: text("common_inputs/domain").into(),
        workstation: text("common_inputs/workstation").into(),
        password: Some(Password::new(text("common_inputs/password"))),
        ..Credentials::default()
    }
}

/// MD4 of a 16-byte key: the NTLMv1 SessionBaseKey (MS-NLMP §3.3.1).
pub fn md4(data: &[u8]) -> [u8; 16] {
    Md4::digest(data).into()
}

/// MD5 of the concatenation of `parts`.
pub fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// RC4 (MS-NLMP §6 `RC4K`), test-only: the engine never encrypts a session key.
pub fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s: Vec<u8> = (0..=255).collect();
    let mut j = 0u8;
    for i in 0..256 {
        j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
        s.swap(i, usize::from(j));
    }
    let (mut i, mut j) = (0u8, 0u8);
    data.iter()
        .map(|b| {
            i = i.wrapping_add(1);
            j = j.wrapping_add(s[usize::from(i)]);
            s.swap(usize::from(i), usize::from(j));
            let k = s[usize::from(s[usize::from(i)].wrapping_add(s[usize::from(j)]))];
            b ^ k
        })
        .collect()
}

/// DES of `data` under a 7-byte key, via DESL's first block.
pub fn des7(key7: &[u8], data: &[u8; 8]) -> [u8; 8] {
    let mut k = [0u8; 16];
    k[..7].copy_from_slice(key7);
    let out = crypto::desl(&Hash16::new(k), data);
    out[..8].try_into().expect("8 bytes")
}

/// SIGNKEY for the client (MS-NLMP §3.4.5.2).
pub fn client_sign_key(exported: &[u8]) -> [u8; 16] {
    md5(&[
        exported,
        b"session key to client-to-server signing key magic constant\0",
    ])
}

/// SEALKEY for the client with extended session security (MS-NLMP §3.4.5.3).
pub fn client_seal_key(exported_cut: &[u8]) -> [u8; 16] {
    md5(&[
        exported_cut,
        b"session key to client-to-server sealing key magic constant\0",
    ])
}
