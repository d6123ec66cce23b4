//! NTLM key derivation and challenge responses (MS-NLMP §3.3.1 and §3.3.2).
//!
//! Pure functions over bytes; no I/O, no randomness (the client challenge and the timestamp
//! are parameters so that the MS-NLMP §4.2 vectors are reproducible).

use des::Des;
use des::cipher::{BlockCipherEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;
use zeroize::Zeroizing;

use crate::auth::secret::{Hash16, Password};

/// The constant LMOWFv1 encrypts with each password half (MS-NLMP §3.3.1).
const LM_MAGIC: &[u8; 8] = b"KGS!@#$%";

/// UTF-16LE bytes of a string, as NTLM's "Unicode" strings are encoded (MS-NLMP §2.2).
pub fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// The OEM (single-byte) form of a string: Latin-1 where a character fits, `?` otherwise.
///
/// CNTLM copies the raw bytes of whatever it read; for ASCII both agree.
pub fn oem(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

/// Upper-cases a string the way NTLM upper-cases user names and domains.
pub fn upper(text: &str) -> String {
    text.to_uppercase()
}

/// Spreads a 7-byte key over 8 DES key bytes, 7 bits per byte (parity bits left zero).
fn des_key(key7: &[u8]) -> [u8; 8] {
    debug_assert_eq!(key7.len(), 7);
    let k = key7;
    [
        k[0],
        (k[0] << 7) | (k[1] >> 1),
        (k[1] << 6) | (k[2] >> 2),
        (k[2] << 5) | (k[3] >> 3),
        (k[3] << 4) | (k[4] >> 4),
        (k[4] << 3) | (k[5] >> 5),
        (k[5] << 2) | (k[6] >> 6),
        k[6] << 1,
    ]
}

/// DES-ECB of one 8-byte block under a 7-byte key.
fn des_encrypt(key7: &[u8], data: &[u8; 8]) -> [u8; 8] {
    let cipher = Des::new_from_slice(&des_key(key7)).expect("a DES key is always 8 bytes");
    let mut block = (*data).into();
    cipher.encrypt_block(&mut block);
    block.into()
}

/// DESL (MS-NLMP §6): three DES encryptions of `data` under the 16-byte key padded to 21.
pub fn desl(key: &Hash16, data: &[u8; 8]) -> [u8; 24] {
    let mut k21 = Zeroizing::new([0u8; 21]);
    k21[..16].copy_from_slice(key.expose());
    let mut out = [0u8; 24];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&des_encrypt(&k21[i * 7..i * 7 + 7], data));
    }
    out
}

/// HMAC-MD5 over the concatenation of `parts`.
pub fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// LMOWFv1 (MS-NLMP §3.3.1): DES of "KGS!@#$%" under the upper-cased OEM password,
/// NUL-padded or cut to 14 bytes.
pub fn lm_hash(password: &Password) -> Hash16 {
    let mut key = Zeroizing::new([0u8; 14]);
    let bytes = Zeroizing::new(oem(&upper(password.expose())));
    let n = bytes.len().min(14);
    key[..n].copy_from_slice(&bytes[..n]);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&des_encrypt(&key[..7], LM_MAGIC));
    out[8..].copy_from_slice(&des_encrypt(&key[7..], LM_MAGIC));
    Hash16::new(out)
}

/// NTOWFv1 (MS-NLMP §3.3.1): MD4 of the password as UTF-16LE of its Unicode characters.
///
/// CNTLM 0.92.3 widens each byte instead, so its hash of a non-ASCII UTF-8 password is not
/// the one Windows computes; ours is.
pub fn nt_hash(password: &Password) -> Hash16 {
    let bytes = Zeroizing::new(utf16le(password.expose()));
    Hash16::new(Md4::digest(&*bytes).into())
}

/// NTOWFv2 (MS-NLMP §3.3.2): HMAC-MD5 under NTOWFv1 of UTF-16LE(UPPER(user) ‖ domain).
///
/// The spec keeps the domain's case; CNTLM upper-cases it too and sends it upper-cased, so
/// callers that follow CNTLM pass `upper(domain)` (see `cntlm_ntlmv2_hash`).
pub fn ntlmv2_hash(nt: &Hash16, user: &str, domain: &str) -> Hash16 {
    let identity = utf16le(&format!("{}{}", upper(user), domain));
    Hash16::new(hmac_md5(nt.expose(), &[&identity]))
}

/// CNTLM's `PassNTLMv2`: NTOWFv2 with the domain upper-cased as well.
pub fn cntlm_ntlmv2_hash(nt: &Hash16, user: &str, domain: &str) -> Hash16 {
    ntlmv2_hash(nt, user, &upper(domain))
}

/// LMv1 response (MS-NLMP §3.3.1): DESL(LMOWFv1, ServerChallenge).
pub fn lm_response(lm: &Hash16, server_challenge: &[u8; 8]) -> [u8; 24] {
    desl(lm, server_challenge)
}

/// NTLMv1 response (MS-NLMP §3.3.1): DESL(NTOWFv1, ServerChallenge).
pub fn nt_response(nt: &Hash16, server_challenge: &[u8; 8]) -> [u8; 24] {
    desl(nt, server_challenge)
}

/// NTLMv1 with extended session security (MS-NLMP §3.3.1, "NTLM2 session response"):
/// the LM field is `ClientChallenge ‖ Z(16)`, the NT field
/// `DESL(NTOWFv1, MD5(ServerChallenge ‖ ClientChallenge)[0..8])`.
pub fn ntlm2sr_responses(
    nt: &Hash16,
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
) -> ([u8; 24], [u8; 24]) {
    let mut lm = [0u8; 24];
    lm[..8].copy_from_slice(client_challenge);
    let mut md5 = Md5::new();
    md5.update(server_challenge);
    md5.update(client_challenge);
    let digest: [u8; 16] = md5.finalize().into();
    let mut session_challenge = [0u8; 8];
    session_challenge.copy_from_slice(&digest[..8]);
    (lm, desl(nt, &session_challenge))
}

/// LMv2 response (MS-NLMP §3.3.2): HMAC-MD5(NTOWFv2, SC ‖ CC) ‖ CC.
pub fn lmv2_response(
    ntlmv2: &Hash16,
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(&hmac_md5(
        ntlmv2.expose(),
        &[server_challenge, client_challenge],
    ));
    out[16..].copy_from_slice(client_challenge);
    out
}

/// The NTLMv2 client blob `temp` (MS-NLMP §3.3.2): version 1.1, the FILETIME timestamp, the
/// client challenge and the server's AV pairs (through MsvAvEOL), then four zero bytes.
pub fn ntlmv2_blob(timestamp: u64, client_challenge: &[u8; 8], target_info: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(32 + target_info.len());
    blob.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    blob.extend_from_slice(&timestamp.to_le_bytes());
    blob.extend_from_slice(client_challenge);
    blob.extend_from_slice(&[0; 4]);
    blob.extend_from_slice(target_info);
    blob.extend_from_slice(&[0; 4]);
    blob
}

/// NTLMv2 response (MS-NLMP §3.3.2): `NTProofStr ‖ blob`, where
/// `NTProofStr = HMAC-MD5(NTOWFv2, ServerChallenge ‖ blob)`.
pub fn ntlmv2_response(ntlmv2: &Hash16, server_challenge: &[u8; 8], blob: &[u8]) -> Vec<u8> {
    let proof = hmac_md5(ntlmv2.expose(), &[server_challenge, blob]);
    let mut out = Vec::with_capacity(16 + blob.len());
    out.extend_from_slice(&proof);
    out.extend_from_slice(blob);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex16(h: &Hash16) -> String {
        h.expose().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn ms_nlmp_4_2_2_1_lmowfv1_and_ntowfv1() {
        let p = Password::new("Password");
        assert_eq!(hex16(&lm_hash(&p)), "e52cac67419a9a224a3b108f3fa6cb6d");
        assert_eq!(hex16(&nt_hash(&p)), "a4f49c406510bdcab6824ee7c30fd852");
    }

    #[test]
    fn ms_nlmp_4_2_4_1_1_ntowfv2() {
        let nt = nt_hash(&Password::new("Password"));
        assert_eq!(
            hex16(&ntlmv2_hash(&nt, "User", "Domain")),
            "0c868a403bfd7a93a3001ef22ef02e3f"
        );
    }
}
