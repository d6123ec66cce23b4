//! Property tests: Type 3 build/parse round trips for names up to 256 characters, any
//! TargetInfo up to 64 KiB, and arbitrary Type 2 bytes, none of which may panic.

mod ntlm_common;

use cntlm::auth::ntlm::{
    self, AuthenticateMessage, ChallengeMessage, NegotiateFlags, ResponseInputs, Type3Profile,
    crypto,
};
use cntlm::auth::{Credentials, NtlmDialect, Password};
use proptest::prelude::*;

const DIALECTS: [NtlmDialect; 5] = [
    NtlmDialect::Lm,
    NtlmDialect::Nt,
    NtlmDialect::Ntlm,
    NtlmDialect::Ntlm2Sr,
    NtlmDialect::NtlmV2,
];

fn challenge(flags: u32, target_info: &[u8]) -> Vec<u8> {
    let len = u16::try_from(target_info.len()).expect("at most 64 KiB - 1");
    let mut m = b"NTLMSSP\0\x02\0\0\0".to_vec();
    m.extend_from_slice(&[0, 0, 0, 0, 48, 0, 0, 0]);
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&len.to_le_bytes());
    m.extend_from_slice(&len.to_le_bytes());
    m.extend_from_slice(&48u32.to_le_bytes());
    m.extend_from_slice(target_info);
    m
}

fn credentials(user: &str, domain: &str, workstation: &str) -> Credentials {
    Credentials {
        user: user.into(),
        domain: domain.into(),
        workstation: workstation.into(),
        password: Some(Password::new("Pässwörd 1")),
        ..Credentials::default()
    }
}

/// What a string reads back as after OEM encoding (Latin-1, `?` for the rest).
fn through_oem(text: &str) -> String {
    crypto::oem(text).into_iter().map(char::from).collect()
}

fn dialect() -> impl Strategy<Value = NtlmDialect> {
    prop::sample::select(DIALECTS.to_vec())
}

fn name() -> impl Strategy<Value = String> {
    "\\PC{0,256}"
}

proptest! {
    #[test]
    fn type3_round_trips_unicode_names(
        user in name(), domain in name(), workstation in name(), dialect in dialect(),
        client_challenge in any::<[u8; 8]>(),
    ) {
        let creds = credentials(&user, &domain, &workstation);
        let msg = challenge(0x0080_8201, &[2, 0, 2, 0, 0x41, 0, 0, 0, 0, 0]);
        let inputs = ResponseInputs { client_challenge, now: 1, profile: Type3Profile::Negotiated };
        let bytes = ntlm::authenticate_with(dialect, &creds, &msg, 1 << 17, &inputs)
            .expect("names of 256 characters fit");
        let parsed = AuthenticateMessage::parse(&bytes).expect("our own Type 3 parses");
        prop_assert_eq!(&parsed.user, &user, "the user keeps its case");
        prop_assert_eq!(&parsed.domain, &crypto::upper(&domain));
        prop_assert_eq!(&parsed.workstation, &crypto::upper(&workstation));
        prop_assert!(parsed.flags.contains(NegotiateFlags::UNICODE));
        prop_assert!(parsed.session_key.is_empty());
        prop_assert_eq!(parsed.encode().expect("re-encodes"), bytes);
    }

    #[test]
    fn type3_round_trips_oem_names(
        user in name(), domain in name(), workstation in name(), dialect in dialect(),
    ) {
        let creds = credentials(&user, &domain, &workstation);
        let msg = challenge(0x0000_8206, &[]);
        let inputs = ResponseInputs { client_challenge: [7; 8], now: 1, profile: Type3Profile::Negotiated };
        let bytes = ntlm::authenticate_with(dialect, &creds, &msg, 1 << 17, &inputs)
            .expect("names of 256 characters fit");
        let parsed = AuthenticateMessage::parse(&bytes).expect("our own Type 3 parses");
        prop_assert_eq!(parsed.user, through_oem(&crypto::upper(&user)));
        prop_assert_eq!(parsed.domain, through_oem(&crypto::upper(&domain)));
        prop_assert_eq!(parsed.workstation, through_oem(&crypto::upper(&workstation)));
    }

    #[test]
    fn type1_carries_upper_cased_oem_names(domain in name(), workstation in name(), dialect in dialect()) {
        let bytes = ntlm::negotiate(dialect, None, &credentials("u", &domain, &workstation));
        let wks = crypto::oem(&crypto::upper(&workstation));
        let dom = crypto::oem(&crypto::upper(&domain));
        prop_assert_eq!(bytes.len(), 32 + wks.len() + dom.len());
        prop_assert_eq!(&bytes[32..32 + wks.len()], &wks[..]);
        prop_assert_eq!(&bytes[32 + wks.len()..], &dom[..]);
    }

    #[test]
    fn any_target_info_up_to_64_kib_never_panics(
        target_info in prop::collection::vec(any::<u8>(), 0..65488),
        flags in any::<u32>(),
        dialect in dialect(),
    ) {
        let msg = challenge(flags, &target_info);
        let creds = credentials("User", "Domain", "COMPUTER");
        let inputs = ResponseInputs { client_challenge: [1; 8], now: 2, profile: Type3Profile::Negotiated };
        if let Ok(bytes) = ntlm::authenticate_with(dialect, &creds, &msg, 1 << 17, &inputs) {
            let parsed = AuthenticateMessage::parse(&bytes);
            // Unicode strings parse back; OEM ones always do.
            prop_assert!(parsed.is_ok());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ChallengeMessage::parse(&raw, 16384);
        let _ = AuthenticateMessage::parse(&raw);
    }

    #[test]
    fn mutated_spec_challenge_never_panics(
        edits in prop::collection::vec((0usize..104, any::<u8>()), 1..8),
        cut in 0usize..=104,
    ) {
        let mut raw = ntlm_common::bytes("dialects/NTLMv2/messages/CHALLENGE_MESSAGE");
        for (at, value) in edits {
            raw[at] = value;
        }
        raw.truncate(cut);
        let creds = credentials("User", "Domain", "COMPUTER");
        for dialect in DIALECTS {
            let inputs = ResponseInputs { client_challenge: [1; 8], now: 2, profile: Type3Profile::Negotiated };
            let _ = ntlm::authenticate_with(dialect, &creds, &raw, 16384, &inputs);
        }
    }

    #[test]
    fn ntlmv2_proof_verifies_for_any_names_and_target_info(
        user in name(), domain in name(),
        pairs in prop::collection::vec((1u16..11, prop::collection::vec(any::<u8>(), 0..64)), 0..8),
    ) {
        let mut info = Vec::new();
        for (id, value) in &pairs {
            // A timestamp must be 8 bytes; other ids take anything.
            let value: &[u8] = if *id == 7 { &[9; 8] } else { value };
            info.extend_from_slice(&id.to_le_bytes());
            info.extend_from_slice(&u16::try_from(value.len()).expect("short").to_le_bytes());
            info.extend_from_slice(value);
        }
        info.extend_from_slice(&[0; 4]);
        let msg = challenge(0x0080_8201, &info);
        let creds = credentials(&user, &domain, "WS");
        let inputs = ResponseInputs { client_challenge: [3; 8], now: 4, profile: Type3Profile::Negotiated };
        let bytes = ntlm::authenticate_with(NtlmDialect::NtlmV2, &creds, &msg, 1 << 17, &inputs)
            .expect("answers");
        let parsed = AuthenticateMessage::parse(&bytes).expect("parses");
        // The server's check (MS-NLMP §3.3.2), with the names as they arrived.
        let nt = crypto::nt_hash(&Password::new("Pässwörd 1"));
        let key = crypto::ntlmv2_hash(&nt, &parsed.user, &parsed.domain);
        let proof = crypto::hmac_md5(key.expose(), &[&[1, 2, 3, 4, 5, 6, 7, 8], &parsed.nt_response[16..]]);
        prop_assert_eq!(&parsed.nt_response[..16], &proof[..]);
        // The blob carries the server's pairs verbatim, EOL included.
        prop_assert_eq!(&parsed.nt_response[44..44 + info.len()], &info[..]);
    }
}
