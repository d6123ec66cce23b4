//! MS-NLMP §4.2 known-answer vectors (tests/data/ntlm-vectors.json), one test per value,
//! named after the section that prints it; plus the Chromium MIC vector.
//!
//! Session keys, seal and sign keys are checked with test-only algebra (`ntlm_common`):
//! a proxy client sends none of them, but a wrong formula in our hashes would show there.

mod ntlm_common;

use cntlm::auth::NtlmDialect;
use cntlm::auth::ntlm::{
    AuthenticateMessage, ChallengeMessage, DEFAULT_MAX_LEN, NegotiateFlags, ResponseInputs,
    Type3Profile, crypto,
};
use cntlm::auth::{Credentials, Password};
use ntlm_common::*;

const V1: &str = "dialects/LM_and_NTLMv1";
const ESS: &str = "dialects/NTLMv1_ESS_NTLM2SR";
const V2: &str = "dialects/NTLMv2";

fn password() -> Password {
    Password::new(text("common_inputs/password"))
}

fn server_challenge() -> [u8; 8] {
    bytes8("common_inputs/server_challenge")
}

fn client_challenge() -> [u8; 8] {
    bytes8("common_inputs/client_challenge")
}

fn spec_inputs() -> ResponseInputs {
    ResponseInputs {
        client_challenge: client_challenge(),
        now: u64::from_le_bytes(bytes8("common_inputs/time")),
        profile: Type3Profile::Cntlm,
    }
}

/// The spec's NTOWFv2 keeps the domain's case; CNTLM's does not. These vectors use the spec's.
fn spec_ntlmv2_hash() -> [u8; 16] {
    *crypto::ntlmv2_hash(&crypto::nt_hash(&password()), "User", "Domain").expose()
}

// ---- 4.2.2 NTLMv1 authentication ----

#[test]
fn ms_nlmp_4_2_2_1_1_lmowfv1() {
    let lm = crypto::lm_hash(&password());
    assert_eq!(hx(lm.expose()), text(&format!("{V1}/expected/LMOWFv1")));
}

#[test]
fn ms_nlmp_4_2_2_1_2_ntowfv1() {
    let nt = crypto::nt_hash(&password());
    assert_eq!(hx(nt.expose()), text(&format!("{V1}/expected/NTOWFv1")));
}

#[test]
fn ms_nlmp_4_2_2_1_3_session_base_key() {
    let nt = crypto::nt_hash(&password());
    assert_eq!(
        hx(md4(nt.expose())),
        text(&format!("{V1}/expected/SessionBaseKey"))
    );
}

#[test]
fn ms_nlmp_4_2_2_1_3_key_exchange_key() {
    // Without ESS, LM_KEY or NON_NT_SESSION_KEY, KXKEY is the SessionBaseKey (§3.4.5.1).
    let nt = crypto::nt_hash(&password());
    assert_eq!(
        hx(md4(nt.expose())),
        text(&format!("{V1}/expected/KeyExchangeKey"))
    );
}

#[test]
fn ms_nlmp_4_2_2_2_1_ntlmv1_response() {
    let r = crypto::nt_response(&crypto::nt_hash(&password()), &server_challenge());
    assert_eq!(hx(r), text(&format!("{V1}/expected/NtChallengeResponse")));
}

#[test]
fn ms_nlmp_4_2_2_2_2_lmv1_response() {
    let r = crypto::lm_response(&crypto::lm_hash(&password()), &server_challenge());
    assert_eq!(hx(r), text(&format!("{V1}/expected/LmChallengeResponse")));
}

#[test]
fn ms_nlmp_4_2_2_2_3_encrypted_session_key() {
    let kxkey = md4(crypto::nt_hash(&password()).expose());
    let random = bytes("common_inputs/random_session_key");
    assert_eq!(
        hx(rc4(&kxkey, &random)),
        text(&format!("{V1}/expected/EncryptedRandomSessionKey"))
    );
}

/// KXKEY with NTLMSSP_NEGOTIATE_LM_KEY (§3.4.5.1): DES under LMOWFv1's two halves (the
/// second padded with 0xBD) of the LM response's first 8 bytes.
fn lm_key_kxkey() -> Vec<u8> {
    let lm = crypto::lm_hash(&password());
    let lm_resp = crypto::lm_response(&lm, &server_challenge());
    let data: [u8; 8] = lm_resp[..8].try_into().expect("8 bytes");
    let mut second = [0xBDu8; 7];
    second[0] = lm.expose()[7];
    [des7(&lm.expose()[..7], &data), des7(&second, &data)].concat()
}

#[test]
fn ms_nlmp_4_2_2_2_3_key_exchange_key_with_lm_key() {
    let path = format!("{V1}/variants/with NTLMSSP_NEGOTIATE_LM_KEY/KeyExchangeKey");
    assert_eq!(hx(lm_key_kxkey()), text(&path));
}

#[test]
fn ms_nlmp_4_2_2_2_3_encrypted_session_key_with_lm_key() {
    let path = format!("{V1}/variants/with NTLMSSP_NEGOTIATE_LM_KEY/EncryptedRandomSessionKey");
    let random = bytes("common_inputs/random_session_key");
    assert_eq!(hx(rc4(&lm_key_kxkey(), &random)), text(&path));
}

fn non_nt_kxkey() -> Vec<u8> {
    let lm = crypto::lm_hash(&password());
    [&lm.expose()[..8], &[0u8; 8][..]].concat()
}

#[test]
fn ms_nlmp_4_2_2_2_3_key_exchange_key_with_non_nt_session_key() {
    let path = format!("{V1}/variants/with NTLMSSP_NEGOTIATE_NON_NT_SESSION_KEY/KeyExchangeKey");
    assert_eq!(hx(non_nt_kxkey()), text(&path));
}

#[test]
fn ms_nlmp_4_2_2_2_3_encrypted_session_key_with_non_nt_session_key() {
    let path = format!(
        "{V1}/variants/with NTLMSSP_NEGOTIATE_NON_NT_SESSION_KEY/EncryptedRandomSessionKey"
    );
    let random = bytes("common_inputs/random_session_key");
    assert_eq!(hx(rc4(&non_nt_kxkey(), &random)), text(&path));
}

/// Parses a spec CHALLENGE_MESSAGE and checks the fields the inputs name.
fn check_spec_challenge(dialect: &str) {
    let raw = bytes(&format!("{dialect}/messages/CHALLENGE_MESSAGE"));
    let msg = ChallengeMessage::parse(&raw, DEFAULT_MAX_LEN).expect("the spec's challenge parses");
    assert_eq!(
        msg.flags,
        NegotiateFlags(number(&format!("{dialect}/inputs/negotiate_flags")))
    );
    assert_eq!(msg.server_challenge, server_challenge());
    assert_eq!(msg.target_name, crypto::utf16le("Server").as_slice());
}

/// Parses a spec AUTHENTICATE_MESSAGE with our Type 3 parser, checks every field against the
/// dialect's expected values, and checks that our answer to the spec's CHALLENGE carries the
/// same responses.
fn check_spec_authenticate(dialect: &str, ours: NtlmDialect, credentials: &Credentials) {
    let raw = bytes(&format!("{dialect}/messages/AUTHENTICATE_MESSAGE"));
    let theirs = AuthenticateMessage::parse(&raw).expect("the spec's authenticate parses");
    assert_eq!(
        theirs.flags,
        NegotiateFlags(number(&format!("{dialect}/messages/AUTHENTICATE_flags")))
    );
    assert_eq!(
        (
            theirs.user.as_str(),
            theirs.domain.as_str(),
            theirs.workstation.as_str()
        ),
        ("User", "Domain", "COMPUTER")
    );
    // 4.2.3 prints no EncryptedRandomSessionKey; its test checks the field against KXKEY.
    if let Some(key) = at(&format!("{dialect}/expected")).get("EncryptedRandomSessionKey") {
        assert_eq!(Some(hx(&theirs.session_key).as_str()), key.as_str());
    }
    let expected_lm = format!("{dialect}/expected/{}", lm_key_name(dialect));
    assert_eq!(hx(&theirs.lm_response), text(&expected_lm));
    assert_eq!(
        hx(&theirs.nt_response),
        text(&format!("{dialect}/expected/NtChallengeResponse"))
    );

    let challenge_raw = bytes(&format!("{dialect}/messages/CHALLENGE_MESSAGE"));
    let challenge = ChallengeMessage::parse(&challenge_raw, DEFAULT_MAX_LEN).expect("parses");
    let answer = AuthenticateMessage::answer(&challenge, ours, credentials, &spec_inputs())
        .expect("the key material is there");
    assert_eq!(hx(&answer.lm_response), hx(&theirs.lm_response));
    assert_eq!(hx(&answer.nt_response), hx(&theirs.nt_response));
}

fn lm_key_name(dialect: &str) -> &'static str {
    if dialect == V2 {
        "LMv2_Response"
    } else {
        "LmChallengeResponse"
    }
}

#[test]
fn ms_nlmp_4_2_2_3_challenge_message() {
    check_spec_challenge(V1);
}

#[test]
fn ms_nlmp_4_2_2_3_authenticate_message() {
    // Hashes only, no password: PassLM + PassNT are enough for Auth NTLM.
    let credentials = Credentials {
        lm_hash: Some(hash16(&format!("{V1}/expected/LMOWFv1"))),
        nt_hash: Some(hash16(&format!("{V1}/expected/NTOWFv1"))),
        ..spec_credentials()
    };
    let credentials = Credentials {
        password: None,
        ..credentials
    };
    check_spec_authenticate(V1, NtlmDialect::Ntlm, &credentials);
}

// ---- 4.2.3 NTLMv1 with client challenge (extended session security: NTLM2SR) ----

#[test]
fn ms_nlmp_4_2_3_1_1_ntowfv1() {
    let nt = crypto::nt_hash(&password());
    assert_eq!(hx(nt.expose()), text(&format!("{ESS}/expected/NTOWFv1")));
}

#[test]
fn ms_nlmp_4_2_3_1_2_session_base_key() {
    let nt = crypto::nt_hash(&password());
    assert_eq!(
        hx(md4(nt.expose())),
        text(&format!("{ESS}/expected/SessionBaseKey"))
    );
}

/// KXKEY with ESS (§3.4.5.1): HMAC_MD5(SessionBaseKey, SC ‖ LmChallengeResponse[0..8]).
fn ess_kxkey() -> [u8; 16] {
    let base = md4(crypto::nt_hash(&password()).expose());
    crypto::hmac_md5(&base, &[&server_challenge(), &client_challenge()])
}

#[test]
fn ms_nlmp_4_2_3_1_3_key_exchange_key() {
    assert_eq!(
        hx(ess_kxkey()),
        text(&format!("{ESS}/expected/KeyExchangeKey"))
    );
}

#[test]
fn ms_nlmp_4_2_3_2_1_lmv1_response() {
    let (lm, _) = crypto::ntlm2sr_responses(
        &crypto::nt_hash(&password()),
        &server_challenge(),
        &client_challenge(),
    );
    assert_eq!(hx(lm), text(&format!("{ESS}/expected/LmChallengeResponse")));
}

#[test]
fn ms_nlmp_4_2_3_2_2_ntlmv1_response() {
    let (_, nt) = crypto::ntlm2sr_responses(
        &crypto::nt_hash(&password()),
        &server_challenge(),
        &client_challenge(),
    );
    assert_eq!(hx(nt), text(&format!("{ESS}/expected/NtChallengeResponse")));
}

#[test]
fn ms_nlmp_4_2_3_4_seal_key_56_bit() {
    // 0x820a8233 has no KEY_EXCH: ExportedSessionKey is the KXKEY; 56-bit cuts it to 7 bytes.
    let exported = ess_kxkey();
    assert_eq!(
        hx(client_seal_key(&exported[..7])),
        text(&format!("{ESS}/expected/SealKey_client_56bit"))
    );
}

#[test]
fn ms_nlmp_4_2_3_4_sign_key() {
    let exported = ess_kxkey();
    assert_eq!(
        hx(client_sign_key(&exported)),
        text(&format!("{ESS}/expected/SignKey_client"))
    );
}

#[test]
fn ms_nlmp_4_2_3_3_challenge_message() {
    check_spec_challenge(ESS);
}

#[test]
fn ms_nlmp_4_2_3_3_authenticate_message() {
    let credentials = Credentials {
        password: None,
        nt_hash: Some(hash16(&format!("{ESS}/expected/NTOWFv1"))),
        ..spec_credentials()
    };
    // Without KEY_EXCH (0x820a8233) no EncryptedRandomSessionKey is sent.
    let raw = bytes(&format!("{ESS}/messages/AUTHENTICATE_MESSAGE"));
    let theirs = AuthenticateMessage::parse(&raw).expect("parses");
    assert!(
        !NegotiateFlags(number(&format!("{ESS}/inputs/negotiate_flags")))
            .contains(NegotiateFlags::KEY_EXCH)
    );
    assert!(theirs.session_key.is_empty());
    check_spec_authenticate(ESS, NtlmDialect::Ntlm2Sr, &credentials);
}

// ---- 4.2.4 NTLMv2 authentication ----

#[test]
fn ms_nlmp_4_2_4_1_1_ntowfv2() {
    assert_eq!(
        hx(spec_ntlmv2_hash()),
        text(&format!("{V2}/expected/NTOWFv2"))
    );
}

#[test]
fn ms_nlmp_4_2_4_1_1_lmowfv2() {
    assert_eq!(
        hx(spec_ntlmv2_hash()),
        text(&format!("{V2}/expected/LMOWFv2"))
    );
}

fn spec_blob() -> Vec<u8> {
    crypto::ntlmv2_blob(
        u64::from_le_bytes(bytes8(&format!("{V2}/inputs/time"))),
        &client_challenge(),
        &bytes(&format!("{V2}/inputs/target_info")),
    )
}

#[test]
fn ms_nlmp_4_2_4_1_3_temp() {
    assert_eq!(hx(spec_blob()), text(&format!("{V2}/expected/temp")));
}

fn nt_proof_str() -> [u8; 16] {
    crypto::hmac_md5(&spec_ntlmv2_hash(), &[&server_challenge(), &spec_blob()])
}

#[test]
fn ms_nlmp_4_2_4_2_2_nt_proof_str() {
    assert_eq!(
        hx(nt_proof_str()),
        text(&format!("{V2}/expected/NTProofStr"))
    );
}

#[test]
fn ms_nlmp_4_2_4_1_2_session_base_key() {
    let key = crypto::hmac_md5(&spec_ntlmv2_hash(), &[&nt_proof_str()]);
    assert_eq!(hx(key), text(&format!("{V2}/expected/SessionBaseKey")));
}

#[test]
fn ms_nlmp_4_2_4_2_1_lmv2_response() {
    let key = cntlm::auth::Hash16::new(spec_ntlmv2_hash());
    let r = crypto::lmv2_response(&key, &server_challenge(), &client_challenge());
    assert_eq!(hx(r), text(&format!("{V2}/expected/LMv2_Response")));
}

#[test]
fn ms_nlmp_4_2_4_2_2_ntlmv2_response() {
    let key = cntlm::auth::Hash16::new(spec_ntlmv2_hash());
    let r = crypto::ntlmv2_response(&key, &server_challenge(), &spec_blob());
    assert_eq!(hx(r), text(&format!("{V2}/expected/NtChallengeResponse")));
}

#[test]
fn ms_nlmp_4_2_4_2_3_encrypted_session_key() {
    // NTLMv2: KXKEY is the SessionBaseKey.
    let kxkey = crypto::hmac_md5(&spec_ntlmv2_hash(), &[&nt_proof_str()]);
    let random = bytes("common_inputs/random_session_key");
    assert_eq!(
        hx(rc4(&kxkey, &random)),
        text(&format!("{V2}/expected/EncryptedRandomSessionKey"))
    );
}

#[test]
fn ms_nlmp_4_2_4_4_seal_key_128_bit() {
    let exported = bytes("common_inputs/random_session_key");
    assert_eq!(
        hx(client_seal_key(&exported)),
        text(&format!("{V2}/expected/SealKey_client_128bit"))
    );
}

#[test]
fn ms_nlmp_4_2_4_4_sign_key() {
    let exported = bytes("common_inputs/random_session_key");
    assert_eq!(
        hx(client_sign_key(&exported)),
        text(&format!("{V2}/expected/SignKey_client"))
    );
}

#[test]
fn ms_nlmp_4_2_4_3_challenge_message() {
    check_spec_challenge(V2);
    let raw = bytes(&format!("{V2}/messages/CHALLENGE_MESSAGE"));
    let msg = ChallengeMessage::parse(&raw, DEFAULT_MAX_LEN).expect("parses");
    assert_eq!(msg.timestamp(), None);
    let info = msg
        .target_info
        .expect("the 4.2.4 challenge carries TargetInfo");
    assert_eq!(
        hx(info.to_blob_bytes()),
        text(&format!("{V2}/inputs/target_info"))
    );
    assert_eq!(
        hx(info.to_blob_bytes()),
        text("common_inputs/server_name_av_pairs_hex")
    );
    // The bytes put MsvAvNbDomainName before MsvAvNbComputerName (notes §0).
    let names: Vec<_> = info.pairs().map(|p| p.id).collect();
    assert_eq!(
        names,
        [
            cntlm::auth::ntlm::AvId::NB_DOMAIN_NAME,
            cntlm::auth::ntlm::AvId::NB_COMPUTER_NAME
        ]
    );
}

#[test]
fn ms_nlmp_4_2_4_3_authenticate_message() {
    // PassNTLMv2 given as the spec's NTOWFv2 (domain as typed), and nothing else.
    let credentials = Credentials {
        password: None,
        ntlmv2_hash: Some(hash16(&format!("{V2}/expected/NTOWFv2"))),
        ..spec_credentials()
    };
    check_spec_authenticate(V2, NtlmDialect::NtlmV2, &credentials);
}

#[test]
fn ms_nlmp_4_2_4_common_inputs_av_pairs_decoded() {
    let raw = bytes("common_inputs/server_name_av_pairs_hex");
    let info = cntlm::auth::ntlm::TargetInfo::parse(&raw)
        .expect("valid")
        .expect("two pairs");
    let decoded: Vec<String> = info
        .pairs()
        .map(|p| {
            let units: Vec<u16> = p
                .value
                .chunks_exact(2)
                .map(|u| u16::from_le_bytes([u[0], u[1]]))
                .collect();
            format!("{:?}|{}", p.id, String::from_utf16(&units).expect("UTF-16"))
        })
        .collect();
    let expected: Vec<String> = at("common_inputs/av_pairs_decoded")
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|pair| {
            let name = pair[0].as_str()?;
            let value = pair[1].as_str()?;
            (!name.starts_with("MsvAvEOL")).then(|| format!("{name}|{value}"))
        })
        .collect();
    assert_eq!(decoded, expected);
}

#[test]
fn ms_nlmp_2_2_2_10_version_fields_of_the_spec_messages() {
    // The spec messages carry Version right after the 48-byte Type 2 header and the
    // 64-byte Type 3 header; cntlm sends none, but the parsers must step over them.
    let challenge = bytes(&format!("{V2}/messages/CHALLENGE_MESSAGE"));
    assert_eq!(
        hx(&challenge[48..56]),
        text("common_inputs/challenge_version_hex")
    );
    let authenticate = bytes(&format!("{V2}/messages/AUTHENTICATE_MESSAGE"));
    assert_eq!(
        hx(&authenticate[64..72]),
        text("common_inputs/authenticate_version_hex")
    );
}

// ---- Chromium's NTLMv2 + MIC vector (net/ntlm/ntlm_test_data.h) ----

const MIC: &str = "extras/NTLMv2_MIC_chromium";

fn chromium_blob() -> Vec<u8> {
    let time = at(&format!("{MIC}/client_timestamp_filetime"))
        .as_u64()
        .expect("a number");
    crypto::ntlmv2_blob(
        time,
        &client_challenge(),
        &bytes(&format!("{MIC}/updated_target_info")),
    )
}

#[test]
fn chromium_ntlmv2_with_client_timestamp_nt_proof_str() {
    let proof = crypto::hmac_md5(
        &spec_ntlmv2_hash(),
        &[&server_challenge(), &chromium_blob()],
    );
    assert_eq!(hx(proof), text(&format!("{MIC}/NTProofStr")));
}

#[test]
fn chromium_ntlmv2_with_client_timestamp_session_base_key() {
    let proof = bytes(&format!("{MIC}/NTProofStr"));
    let key = crypto::hmac_md5(&spec_ntlmv2_hash(), &[&proof]);
    assert_eq!(hx(key), text(&format!("{MIC}/SessionBaseKey")));
}

#[test]
fn ms_nlmp_3_1_5_1_2_mic_over_the_chromium_messages() {
    // Chromium's Type 3: 88-byte header (Version zero, MIC), payload LM(24 zero bytes) |
    // NT | Domain | User | Workstation, empty session key pointing at the payload start.
    let key = cntlm::auth::Hash16::new(spec_ntlmv2_hash());
    let nt = crypto::ntlmv2_response(&key, &server_challenge(), &chromium_blob());
    let strings = ["Domain", "User", "COMPUTER"].map(crypto::utf16le);
    let payload: [&[u8]; 5] = [&[0u8; 24], &nt, &strings[0], &strings[1], &strings[2]];
    let mut type3 = b"NTLMSSP\0\x03\0\0\0".to_vec();
    let mut offset = 88u32;
    for field in payload {
        let len = u16::try_from(field.len()).expect("fits");
        type3.extend_from_slice(&len.to_le_bytes());
        type3.extend_from_slice(&len.to_le_bytes());
        type3.extend_from_slice(&offset.to_le_bytes());
        offset += u32::from(len);
    }
    type3.extend_from_slice(&[0, 0, 0, 0, 88, 0, 0, 0]);
    type3.extend_from_slice(&number(&format!("{MIC}/authenticate_flags")).to_le_bytes());
    type3.extend_from_slice(&[0; 8 + 16]);
    for field in payload {
        type3.extend_from_slice(field);
    }
    let session_base_key = bytes(&format!("{MIC}/SessionBaseKey"));
    let mic = crypto::hmac_md5(
        &session_base_key,
        &[
            &bytes(&format!("{MIC}/negotiate_message")),
            &bytes(&format!("{MIC}/challenge_message")),
            &type3,
        ],
    );
    assert_eq!(hx(mic), text(&format!("{MIC}/MIC")));
    // Our Type 3 parser reads Chromium's layout too (Version and MIC skipped).
    let parsed = AuthenticateMessage::parse(&type3).expect("parses");
    assert_eq!(parsed.user, "User");
    assert_eq!(parsed.nt_response, nt);
}

#[test]
fn chromium_challenge_message_parses_with_version_and_target_info() {
    let raw = bytes(&format!("{MIC}/challenge_message"));
    let msg = ChallengeMessage::parse(&raw, DEFAULT_MAX_LEN).expect("parses");
    assert_eq!(
        hx(msg.target_info.expect("present").to_blob_bytes()),
        text(&format!("{V2}/inputs/target_info"))
    );
}

#[test]
fn chromium_negotiate_message_parses_as_flags_and_empty_fields() {
    let raw = bytes(&format!("{MIC}/negotiate_message"));
    assert_eq!(&raw[..8], b"NTLMSSP\0");
    let flags = NegotiateFlags(u32::from_le_bytes(raw[12..16].try_into().expect("4 bytes")));
    assert!(flags.contains(NegotiateFlags::UNICODE | NegotiateFlags::EXTENDED_SESSIONSECURITY));
}
