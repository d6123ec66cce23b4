//! Unit tests of `scheme`: offer parsing, Kerberos sources, `Auto`'s preference.

use super::*;
use crate::auth::Password;
use crate::config::Config;
use crate::http::{Headers, Version};

fn resp(fields: &[&str]) -> ResponseHead {
    let mut headers = Headers::default();
    for f in fields {
        headers.push("Proxy-Authenticate", f.as_bytes());
    }
    ResponseHead {
        version: Version::Http11,
        status: 407,
        reason: String::new(),
        headers,
    }
}

#[test]
fn offers_are_parsed_in_order_across_fields_and_lists() {
    let offer = Offer::parse(&resp(&[
        "Negotiate",
        "NTLM",
        "Basic realm=\"corp, inc\", charset=\"UTF-8\"",
    ]));
    let schemes: Vec<AuthScheme> = offer.schemes.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        schemes,
        [AuthScheme::Negotiate, AuthScheme::Ntlm, AuthScheme::Basic]
    );
    let offer = Offer::parse(&resp(&["basic realm=x, negotiate YWJj", "Digest nonce=1"]));
    assert!(offer.has(AuthScheme::Basic) && offer.has(AuthScheme::Negotiate));
    assert!(!offer.has(AuthScheme::Ntlm));
    assert_eq!(offer.token(AuthScheme::Negotiate), Some(&b"abc"[..]));
    assert_eq!(offer.token(AuthScheme::Basic), None, "a realm is no token");
}

#[test]
fn a_param_named_like_a_scheme_is_not_an_offer() {
    let offer = Offer::parse(&resp(&["Basic realm=\"a\", ntlm=1"]));
    assert!(!offer.has(AuthScheme::Ntlm));
    assert!(Offer::parse(&resp(&[])).schemes.is_empty());
}

fn auth_with(user: &str, domain: &str, password: Option<&str>) -> AuthSettings {
    let mut auth = AuthSettings::default();
    auth.credentials.user = user.to_string();
    auth.credentials.domain = domain.to_string();
    auth.credentials.password = password.map(Password::new);
    auth
}

#[test]
fn kerberos_sources_prefer_a_keytab_then_the_cache_then_the_password() {
    let mut auth = auth_with("alice", "corp.example.com", Some("pw"));
    let sources = kerberos_sources(&auth);
    assert!(matches!(sources[0], KerberosCredentials::DefaultCache));
    match &sources[1] {
        KerberosCredentials::Password { user, .. } => assert_eq!(user, "alice@CORP.EXAMPLE.COM"),
        other => panic!("{other:?}"),
    }
    // A NetBIOS domain is no realm: the library's default realm applies.
    auth.credentials.domain = "CORP".to_string();
    match &kerberos_sources(&auth)[1] {
        KerberosCredentials::Password { user, .. } => assert_eq!(user, "alice"),
        other => panic!("{other:?}"),
    }
    assert_eq!(kerberos_sources(&auth_with("alice", "", None)).len(), 1);
    auth.kerberos.keytab = Some("/k.keytab".into());
    let sources = kerberos_sources(&auth);
    assert_eq!(sources.len(), 1);
    assert!(matches!(sources[0], KerberosCredentials::Keytab { .. }));
}

#[test]
fn the_spn_is_the_parent_host_unless_overridden() {
    let parent = ParentProxy {
        host: "proxy.corp".to_string(),
        port: 8080,
    };
    let mut auth = AuthSettings::default();
    assert_eq!(service_principal(&auth, &parent), "HTTP@proxy.corp");
    auth.kerberos.spn = Some("HTTP/lb.corp@CORP".to_string());
    assert_eq!(service_principal(&auth, &parent), "HTTP/lb.corp@CORP");
}

fn shared(auth: AuthSettings) -> Shared {
    let config = Config {
        auth,
        parents: vec![ParentProxy {
            host: "localhost".to_string(),
            port: 1,
        }],
        ..Config::default()
    };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    Shared::new(std::sync::Arc::new(config), Vec::new(), rx)
}

/// The one configured parent (the state is keyed by parent identity).
fn parent0() -> ParentProxy {
    ParentProxy {
        host: "localhost".to_string(),
        port: 1,
    }
}

#[test]
fn auto_prefers_ntlm_then_basic_and_never_unoffered_schemes() {
    let mut auth = auth_with("alice", "LAB", Some("pw"));
    auth.scheme = AuthChoice::Auto;
    let shared = shared(auth);
    let state = &shared.schemes;
    assert_eq!(
        state.expected(&shared, &parent0()),
        None,
        "the offer must be learnt first"
    );
    let ntlm_basic = Offer::parse(&resp(&["NTLM", "Basic realm=x"]));
    assert_eq!(
        state.pick(&shared, &parent0(), &ntlm_basic, &[]),
        Some(AuthScheme::Ntlm)
    );
    assert_eq!(
        state.pick(&shared, &parent0(), &ntlm_basic, &[AuthScheme::Ntlm]),
        Some(AuthScheme::Basic)
    );
    let digest = Offer::parse(&resp(&["Digest realm=x"]));
    assert_eq!(state.pick(&shared, &parent0(), &digest, &[]), None);
    state.remember(&parent0(), &ntlm_basic);
    assert_eq!(state.expected(&shared, &parent0()), Some(AuthScheme::Ntlm));
}

#[test]
fn auto_skips_negotiate_after_it_failed_and_closed_gates() {
    let mut auth = auth_with("alice", "LAB", Some("pw"));
    auth.scheme = AuthChoice::Auto;
    let shared = shared(auth);
    let state = &shared.schemes;
    let both = Offer::parse(&resp(&["Negotiate", "NTLM"]));
    if negotiate::is_available() {
        assert_eq!(
            state.pick(&shared, &parent0(), &both, &[]),
            Some(AuthScheme::Negotiate)
        );
    }
    state.kerberos_failed_at(&parent0());
    assert_eq!(
        state.pick(&shared, &parent0(), &both, &[]),
        Some(AuthScheme::Ntlm)
    );
    for _ in 0..shared.config.limits.auth_failures {
        shared.gate.rejected("p");
    }
    assert_eq!(
        state.pick(&shared, &parent0(), &both, &[]),
        None,
        "a closed NTLM gate is not bypassed"
    );
}

#[test]
fn basic_is_sent_only_with_a_password() {
    let shared = shared(auth_with("alice", "", None));
    let basic = Offer::parse(&resp(&["Basic realm=x"]));
    assert_eq!(shared.schemes.pick(&shared, &parent0(), &basic, &[]), None);
    let auth = auth_with("alice", "", Some("pä"));
    assert_eq!(
        basic_authorization(&auth).as_deref(),
        Some(format!("Basic {}", BASE64.encode("alice:pä")).as_str())
    );
}

#[test]
fn only_ntlm_without_secrets_goes_unauthenticated() {
    let mut auth = auth_with("alice", "", None);
    assert!(!may_authenticate(&auth));
    auth.scheme = AuthChoice::Negotiate;
    assert!(
        may_authenticate(&auth),
        "a ticket cache needs nothing configured"
    );
    auth.scheme = AuthChoice::Basic;
    assert!(!may_authenticate(&auth));
}
