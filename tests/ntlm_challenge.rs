//! Type 2 parsing against hostile and unusual parents: truncation, lying lengths and
//! offsets, CNTLM's 0xFFFC infinite loop, and the NTLMv2 answers CNTLM gets wrong (server
//! timestamp, no TargetInfo).

mod ntlm_common;

use cntlm::auth::NtlmDialect;
use cntlm::auth::ntlm::{
    self, AuthenticateMessage, ChallengeMessage, DEFAULT_MAX_LEN, Incompatible, Malformed,
    NtlmError, ResponseInputs, Type3Profile, crypto,
};
use ntlm_common::*;

const SPEC_CHALLENGE: &str = "dialects/NTLMv2/messages/CHALLENGE_MESSAGE";

/// A Type 2 with the given flags and TargetInfo payload (descriptor at 40, payload at 48).
fn challenge_with_target_info(flags: u32, target_info: &[u8]) -> Vec<u8> {
    let len = u16::try_from(target_info.len()).expect("fits a security buffer");
    let mut m = b"NTLMSSP\0\x02\0\0\0".to_vec();
    m.extend_from_slice(&[0, 0, 0, 0, 48, 0, 0, 0]); // empty TargetName
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&bytes8("common_inputs/server_challenge"));
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&len.to_le_bytes());
    m.extend_from_slice(&len.to_le_bytes());
    m.extend_from_slice(&48u32.to_le_bytes());
    m.extend_from_slice(target_info);
    m
}

fn fixed_inputs() -> ResponseInputs {
    ResponseInputs {
        client_challenge: [0xaa; 8],
        now: 0x01d0_0000_0000_0000,
        profile: Type3Profile::Negotiated,
    }
}

#[test]
fn every_truncation_of_a_valid_challenge_is_a_typed_error() {
    let full = bytes(SPEC_CHALLENGE);
    for len in 0..full.len() {
        let parsed = ChallengeMessage::parse(&full[..len], DEFAULT_MAX_LEN);
        if len < 32 {
            let err = parsed.expect_err("shorter than the fixed header");
            assert!(
                matches!(
                    err,
                    NtlmError::Malformed(Malformed::TooShort { min: 32, .. })
                ),
                "{len}: {err:?}"
            );
        } else if len < 48 {
            // No TargetInfo descriptor yet: an old-style challenge whose TargetName (which
            // nothing uses) is cut off; it still carries the server challenge.
            let msg = parsed.expect("an old-style challenge");
            assert!(
                msg.target_name.is_empty() && msg.target_info.is_none(),
                "{len}"
            );
        } else {
            let err = parsed.expect_err("a truncated TargetInfo");
            assert!(
                matches!(
                    err,
                    NtlmError::Malformed(Malformed::FieldOutOfBounds {
                        field: "TargetInfo",
                        ..
                    })
                ),
                "{len}: {err:?}"
            );
        }
    }
    assert!(ChallengeMessage::parse(&full, DEFAULT_MAX_LEN).is_ok());
}

#[test]
fn lying_target_info_offset_and_length_are_malformed() {
    let full = bytes(SPEC_CHALLENGE);
    let mut offset = full.clone();
    offset[44..48].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut length = full;
    length[40..42].copy_from_slice(&u16::MAX.to_le_bytes());
    for bytes in [offset, length] {
        let err = ChallengeMessage::parse(&bytes, DEFAULT_MAX_LEN).expect_err("lies");
        assert!(
            matches!(
                err,
                NtlmError::Malformed(Malformed::FieldOutOfBounds {
                    field: "TargetInfo",
                    ..
                })
            ),
            "{err:?}"
        );
    }
}

#[test]
fn lying_target_name_is_ignored_as_cntlm_does() {
    let mut name = bytes(SPEC_CHALLENGE);
    name[12..14].copy_from_slice(&0x1000u16.to_le_bytes());
    let msg = ChallengeMessage::parse(&name, DEFAULT_MAX_LEN).expect("TargetName is not used");
    assert!(msg.target_name.is_empty());
    assert!(msg.target_info.is_some(), "TargetInfo is still read");
    // Squid's ntlm_fake_auth (the scripts/bench parent): TargetName offset 0xaaaaaaae.
    let fake = hex::decode("4e544c4d535350000200000009000900aeaaaaaa068208006775d7f1fcb4535e0000000000003a00574f524b47524f5550").expect("hex");
    let msg = ChallengeMessage::parse(&fake, DEFAULT_MAX_LEN).expect("ntlm_fake_auth's challenge");
    assert_eq!(
        msg.server_challenge,
        [0x67, 0x75, 0xd7, 0xf1, 0xfc, 0xb4, 0x53, 0x5e]
    );
}

#[test]
fn av_pair_longer_than_its_field_is_malformed() {
    // One pair claiming 16 bytes inside a 12-byte TargetInfo (the message has more bytes
    // after it, which CNTLM would happily read: the field bounds the pairs).
    let mut info = vec![2, 0, 16, 0];
    info.extend_from_slice(&[0x41; 8]);
    let mut msg = challenge_with_target_info(0x0080_8201, &info);
    msg.extend_from_slice(&[0; 32]);
    let err = ChallengeMessage::parse(&msg, DEFAULT_MAX_LEN).expect_err("overrun");
    assert!(
        matches!(
            err,
            NtlmError::Malformed(Malformed::AvPairOverrun {
                at: 0,
                len: 16,
                available: 8
            })
        ),
        "{err:?}"
    );
}

/// CNTLM 0.92.3 hangs here: its 16-bit AV position wraps on 4 + 0xFFFC and revisits the
/// same pair forever. We finish, linearly, with a typed error.
#[test]
fn cntlm_0_92_3_hang_64_kib_challenge_with_av_len_0xfffc() {
    let mut info = vec![0u8; 65536 - 48];
    info[..4].copy_from_slice(&[1, 0, 0xfc, 0xff]);
    let mut msg = challenge_with_target_info(0x0080_8201, &info[1..]);
    msg[48..52].copy_from_slice(&info[..4]);
    msg.push(0);
    assert_eq!(msg.len(), 65536);

    let err = ChallengeMessage::parse(&msg, DEFAULT_MAX_LEN).expect_err("over 16 KiB");
    assert!(matches!(
        err,
        NtlmError::Incompatible(Incompatible::TooLong {
            len: 65536,
            max: 16384
        })
    ));
    let err = ChallengeMessage::parse(&msg, 65536).expect_err("pair overruns");
    assert!(
        matches!(
            err,
            NtlmError::Malformed(Malformed::AvPairOverrun { len: 0xfffc, .. })
        ),
        "{err:?}"
    );
    let err = ntlm::authenticate(NtlmDialect::NtlmV2, &spec_credentials(), &msg, 65536)
        .expect_err("no answer to a broken challenge");
    assert!(matches!(err, NtlmError::Malformed(_)));
}

#[test]
fn signature_and_message_type_are_checked() {
    let mut bad_signature = bytes(SPEC_CHALLENGE);
    bad_signature[0] = b'X';
    assert!(matches!(
        ChallengeMessage::parse(&bad_signature, DEFAULT_MAX_LEN),
        Err(NtlmError::Malformed(Malformed::BadSignature))
    ));
    let type1 = ntlm::negotiate(NtlmDialect::NtlmV2, None, &spec_credentials());
    let mut padded = type1.clone();
    padded.resize(48, 0);
    assert!(matches!(
        ChallengeMessage::parse(&padded, DEFAULT_MAX_LEN),
        Err(NtlmError::Malformed(Malformed::WrongMessageType {
            found: 1,
            expected: 2
        }))
    ));
    let err = ChallengeMessage::parse(&padded, DEFAULT_MAX_LEN).expect_err("type 1");
    assert_eq!(err.to_string(), "malformed ntlm message");
    let source = std::error::Error::source(&err)
        .expect("a cause")
        .to_string();
    assert_eq!(source, "message type 1, expected 2");
}

/// Reads the timestamp out of an NTLMv2 NtChallengeResponse (NTProofStr, then the blob:
/// 8 bytes of version and reserved, then the FILETIME).
fn blob_timestamp(nt_response: &[u8]) -> u64 {
    u64::from_le_bytes(nt_response[24..32].try_into().expect("8 bytes"))
}

#[test]
fn ms_nlmp_3_1_5_2_1_ntlmv2_uses_the_server_msv_av_timestamp() {
    let server_time: u64 = 0x01dc_0102_0304_0506;
    let mut info = bytes("common_inputs/server_name_av_pairs_hex");
    let eol = info.split_off(info.len() - 4);
    info.extend_from_slice(&[7, 0, 8, 0]);
    info.extend_from_slice(&server_time.to_le_bytes());
    info.extend_from_slice(&eol);
    let msg = challenge_with_target_info(0xe28a_8233, &info);
    let type3 = ntlm::authenticate_with(
        NtlmDialect::NtlmV2,
        &spec_credentials(),
        &msg,
        DEFAULT_MAX_LEN,
        &fixed_inputs(),
    )
    .expect("answers");
    let parsed = AuthenticateMessage::parse(&type3).expect("parses");
    assert_eq!(blob_timestamp(&parsed.nt_response), server_time);
    // The AV list goes into the blob as the server sent it, timestamp included.
    assert_eq!(parsed.nt_response[44..44 + info.len()], info[..]);
}

#[test]
fn ntlmv2_without_target_info_still_answers_with_a_verifiable_proof() {
    // An old-style 32-byte challenge and a 48-byte one with an empty TargetInfo field.
    let full = challenge_with_target_info(0x0000_8205, &[]);
    for msg in [&full[..32], &full[..]] {
        let type3 = ntlm::authenticate_with(
            NtlmDialect::NtlmV2,
            &spec_credentials(),
            msg,
            DEFAULT_MAX_LEN,
            &fixed_inputs(),
        )
        .expect("CNTLM gives up here; we answer");
        let parsed = AuthenticateMessage::parse(&type3).expect("parses");
        let nt = &parsed.nt_response;
        assert_eq!(blob_timestamp(nt), fixed_inputs().now, "our clock");
        // Blob: header 28 bytes, then MsvAvEOL alone, then the 4 trailing zero bytes.
        assert_eq!(nt.len(), 16 + 28 + 4 + 4);
        assert_eq!(nt[44..], [0u8; 8]);
        // What the server checks (MS-NLMP §3.3.2): NTProofStr over SC ‖ blob.
        let key = crypto::cntlm_ntlmv2_hash(
            &crypto::nt_hash(&cntlm::auth::Password::new("Password")),
            "User",
            "Domain",
        );
        let proof = crypto::hmac_md5(
            key.expose(),
            &[&bytes8("common_inputs/server_challenge"), &nt[16..]],
        );
        assert_eq!(nt[..16], proof);
    }
}

#[test]
fn lm_answer_to_an_oem_only_challenge_is_byte_identical_to_cntlm() {
    // With OEM-only flags the default profile and CNTLM agree on the strings.
    let msg = challenge_with_target_info(0x0000_8206, &[]);
    let answer = |profile| {
        let inputs = ResponseInputs {
            profile,
            ..fixed_inputs()
        };
        ntlm::authenticate_with(
            NtlmDialect::Lm,
            &spec_credentials(),
            &msg,
            DEFAULT_MAX_LEN,
            &inputs,
        )
        .expect("answers")
    };
    let ours = answer(Type3Profile::Negotiated);
    let cntlm = answer(Type3Profile::Cntlm);
    assert_eq!(ours, cntlm);
    assert_eq!(&ours[64..78], b"DOMAINUSERCOMP");
}
