//! Criterion micro-benchmarks of the NTLM work a proxy does per parent connection: answering
//! a Type 2 with a Type 3 (MS-NLMP §3.1.5.1.2), and the cryptography inside it (§3.3.2).
//!
//! Inputs are the MS-NLMP §4.2.4 (NTLMv2) values, so the work per iteration is the same as
//! for a real AD member proxy's challenge of that size. Run with `cargo bench --bench ntlm`;
//! the end-to-end benchmark is `scripts/bench` (docs/performance.md). Request-head parsing
//! and chunked framing get their own bench files when `http/` lands.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use cntlm::auth::ntlm::{authenticate, crypto};
use cntlm::auth::{Credentials, NtlmDialect, Password};

/// MS-NLMP §4.2.4.3 CHALLENGE_MESSAGE (TargetName "Server", NbDomainName "Domain",
/// NbComputerName "Server"), with the published length erratum corrected.
const CHALLENGE_4_2_4: &str = "4e544c4d53535000020000000c000c003800000033828ae20123456789abcdef\
                               00000000000000002400240044000000060070170000000f5300650072007600\
                               6500720002000c0044006f006d00610069006e0001000c005300650072007600\
                               6500720000000000";

/// MS-NLMP §4.2.4 TargetInfo (the AV pairs of the challenge above).
const TARGET_INFO_4_2_4: &str =
    "02000c0044006f006d00610069006e0001000c0053006500720076006500720000000000";

const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];

fn credentials() -> Credentials {
    Credentials {
        user: "User".into(),
        domain: "Domain".into(),
        workstation: "COMPUTER".into(),
        password: Some(Password::new("Password")),
        ..Credentials::default()
    }
}

fn type3(c: &mut Criterion) {
    let challenge = hex::decode(CHALLENGE_4_2_4).expect("the §4.2.4 constant is valid hex");
    let creds = credentials();
    // Until the message layer lands this measures the stub's early return; the bench is here
    // so the number appears the day `authenticate` is real.
    c.bench_function("type3/ntlmv2/authenticate", |b| {
        b.iter(|| {
            authenticate(
                NtlmDialect::NtlmV2,
                black_box(&creds),
                black_box(&challenge),
                16 * 1024,
            )
        })
    });

    let target_info = hex::decode(TARGET_INFO_4_2_4).expect("the §4.2.4 constant is valid hex");
    let nt = crypto::nt_hash(&Password::new("Password"));
    let v2 = crypto::ntlmv2_hash(&nt, "User", "Domain");
    // Per handshake: the blob, NTProofStr over it, and the LMv2 response (§3.3.2).
    c.bench_function("type3/ntlmv2/responses", |b| {
        b.iter(|| {
            let blob = crypto::ntlmv2_blob(0, &CLIENT_CHALLENGE, black_box(&target_info));
            let nt_response = crypto::ntlmv2_response(&v2, &SERVER_CHALLENGE, &blob);
            let lm_response = crypto::lmv2_response(&v2, &SERVER_CHALLENGE, &CLIENT_CHALLENGE);
            (nt_response, lm_response)
        })
    });
    // Per configuration load (or per handshake if a build recomputed it): NTOWFv1 + NTOWFv2.
    c.bench_function("keys/password_to_ntowfv2", |b| {
        b.iter(|| {
            let nt = crypto::nt_hash(black_box(&Password::new("Password")));
            crypto::ntlmv2_hash(&nt, "User", "Domain")
        })
    });
}

criterion_group!(benches, type3);
criterion_main!(benches);
