//! Fuzzes the Type 2 parser and the whole answer path behind it with untrusted bytes.
//!
//! The first byte picks the dialect and the profile; the rest is the CHALLENGE_MESSAGE.
//! Whatever the parser accepts must be answered without panicking, and the Type 3 we build
//! must parse back.

#![no_main]

use cntlm::auth::ntlm::{
    self, AuthenticateMessage, ChallengeMessage, DEFAULT_MAX_LEN, ResponseInputs, Type3Profile,
};
use cntlm::auth::{Credentials, NtlmDialect, Password};
use libfuzzer_sys::fuzz_target;

const DIALECTS: [NtlmDialect; 5] = [
    NtlmDialect::Lm,
    NtlmDialect::Nt,
    NtlmDialect::Ntlm,
    NtlmDialect::Ntlm2Sr,
    NtlmDialect::NtlmV2,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, challenge)) = data.split_first() else {
        return;
    };
    let _ = ChallengeMessage::parse(challenge, DEFAULT_MAX_LEN);
    let _ = AuthenticateMessage::parse(challenge);

    let dialect = DIALECTS[usize::from(selector) % DIALECTS.len()];
    let profile = if selector & 0x80 == 0 {
        Type3Profile::Negotiated
    } else {
        Type3Profile::Cntlm
    };
    let credentials = Credentials {
        user: "User".into(),
        domain: "Domain".into(),
        workstation: "COMPUTER".into(),
        password: Some(Password::new("Password")),
        ..Credentials::default()
    };
    let inputs = ResponseInputs {
        client_challenge: [0xaa; 8],
        now: 0,
        profile,
    };
    if let Ok(type3) =
        ntlm::authenticate_with(dialect, &credentials, challenge, DEFAULT_MAX_LEN, &inputs)
    {
        let parsed = AuthenticateMessage::parse(&type3);
        // Our Type 3 uses UNICODE or OEM exactly as its flags say, so it always parses,
        // except under the CNTLM profile for LM (OEM strings, echoed UNICODE flag).
        if profile == Type3Profile::Negotiated {
            assert!(parsed.is_ok(), "our own Type 3 must parse back");
        }
    }
    // The live entry point too (fresh CSPRNG challenge, current time).
    let _ = ntlm::authenticate(dialect, &credentials, challenge, DEFAULT_MAX_LEN);
});
