//! The system GSSAPI (RFC 2744 C bindings), opened at run time with `dlopen`.
//!
//! Why this module uses `unsafe`: the Kerberos implementation we must use is the system's (it
//! owns the user's ticket cache, `krb5.conf` and keytabs), and it is only reachable through C.
//! Linking it at build time would need its headers and libclang on every build machine and
//! would stop the binary from starting where it is absent, so the library is opened at run time
//! and the dozen declarations it needs (in `ffi`) are written by hand from RFC 2744 and MIT's
//! `gssapi.h` / `gssapi_ext.h`. Every `unsafe` block is a call into that library or the `Send`
//! claim on the handle wrapper; each states what it relies on. No module of cntlm outside this
//! one and `ffi` uses `unsafe` (the crate lint is `deny`).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ptr;

mod ffi;

use ffi::{
    Api, BufferDesc, GSS_C_INDEFINITE, GSS_C_INITIATE, GSS_C_ROUTINE_ERROR_MASK, GSS_S_BAD_NAME,
    GSS_S_BAD_NAMETYPE, GSS_S_CONTINUE_NEEDED, GSS_S_CREDENTIALS_EXPIRED,
    GSS_S_DEFECTIVE_CREDENTIAL, GSS_S_NO_CRED, KRB5_SET, KeyValueElement, KeyValueSet,
    NT_HOSTBASED_SERVICE, NT_KRB5_PRINCIPAL, NT_USER_NAME, OmUint32, REQ_FLAGS, RawCred, RawCtx,
    RawName, SPNEGO, SPNEGO_SET, StaticOid, StaticOidSet, api, gss_error, status_text, take_buffer,
};

use super::{KerberosCredentials, NegotiateError, NegotiateStep, kinit};

/// `Ok` when the library loaded, else why not.
pub(super) fn availability() -> Result<(), String> {
    api().map(|_| ())
}

/// Maps a failed acquisition to the error a user can act on.
fn credential_error(
    api: &Api,
    operation: &'static str,
    major: OmUint32,
    minor: OmUint32,
) -> NegotiateError {
    let detail = status_text(api, major, minor);
    match major & GSS_C_ROUTINE_ERROR_MASK {
        GSS_S_NO_CRED | GSS_S_CREDENTIALS_EXPIRED | GSS_S_DEFECTIVE_CREDENTIAL => {
            NegotiateError::NoCredentials { detail }
        }
        _ => NegotiateError::Library { operation, detail },
    }
}

/// A `gss_name_t` we own.
struct OwnedName {
    api: &'static Api,
    raw: RawName,
}

impl OwnedName {
    fn import(
        api: &'static Api,
        text: &str,
        name_type: &'static StaticOid,
    ) -> Result<Self, NegotiateError> {
        let invalid = |detail: String| NegotiateError::InvalidName {
            name: text.to_owned(),
            detail,
        };
        if text.is_empty() || text.contains('\0') {
            return Err(invalid("empty or contains a NUL byte".into()));
        }
        let mut buffer = BufferDesc::borrowing(text.as_bytes());
        let mut raw: RawName = ptr::null_mut();
        let mut minor = 0;
        // SAFETY: the buffer borrows `text` for the duration of the call (the library copies
        // it); the OID is static; `raw` receives a name we release in `Drop`.
        let major =
            unsafe { (api.import_name)(&mut minor, &mut buffer, name_type.as_ptr(), &mut raw) };
        if gss_error(major) {
            let detail = status_text(api, major, minor);
            return Err(match major & GSS_C_ROUTINE_ERROR_MASK {
                GSS_S_BAD_NAME | GSS_S_BAD_NAMETYPE => invalid(detail),
                _ => NegotiateError::Library {
                    operation: "gss_import_name",
                    detail,
                },
            });
        }
        Ok(OwnedName { api, raw })
    }
}

impl Drop for OwnedName {
    fn drop(&mut self) {
        let mut minor = 0;
        // SAFETY: `raw` came from gss_import_name and is released exactly once.
        unsafe { (self.api.release_name)(&mut minor, &mut self.raw) };
    }
}

/// A `gss_cred_id_t` we own.
struct OwnedCred {
    api: &'static Api,
    raw: RawCred,
}

impl Drop for OwnedCred {
    fn drop(&mut self) {
        let mut minor = 0;
        // SAFETY: `raw` came from a gss_acquire_cred* call and is released exactly once.
        unsafe { (self.api.release_cred)(&mut minor, &mut self.raw) };
    }
}

/// `gss_acquire_cred_from` with a credential store (`ccache`, `client_keytab`).
fn acquire_from(
    api: &'static Api,
    desired: Option<&OwnedName>,
    store: &[(&str, &str)],
    mechs: &'static StaticOidSet,
) -> Result<OwnedCred, NegotiateError> {
    let Some(acquire_cred_from) = api.acquire_cred_from else {
        return Err(NegotiateError::Unavailable {
            reason: "this GSSAPI library lacks gss_acquire_cred_from (MIT krb5 1.11 or later \
                     is needed for named caches and keytabs)"
                .into(),
        });
    };
    let owned: Vec<(CString, CString)> = store
        .iter()
        .map(|(k, v)| Ok((CString::new(*k)?, CString::new(*v)?)))
        .collect::<Result<_, std::ffi::NulError>>()
        .map_err(|_| NegotiateError::InvalidName {
            name: store.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(", "),
            detail: "contains a NUL byte".into(),
        })?;
    let elements: Vec<KeyValueElement> = owned
        .iter()
        .map(|(k, v)| KeyValueElement {
            key: k.as_ptr(),
            value: v.as_ptr(),
        })
        .collect();
    let set = KeyValueSet {
        count: elements.len() as OmUint32,
        elements: elements.as_ptr(),
    };
    let mut raw: RawCred = ptr::null_mut();
    let mut minor = 0;
    // SAFETY: `set` and the strings it points at outlive the call; the mechanism set is
    // static; `raw` receives a credential released by `OwnedCred`.
    let major = unsafe {
        acquire_cred_from(
            &mut minor,
            desired.map_or(ptr::null_mut(), |n| n.raw),
            GSS_C_INDEFINITE,
            mechs.as_ptr(),
            GSS_C_INITIATE,
            &set,
            &mut raw,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if gss_error(major) {
        return Err(credential_error(api, "gss_acquire_cred_from", major, minor));
    }
    Ok(OwnedCred { api, raw })
}

/// `gss_acquire_cred` for the default identity (the default ticket cache).
fn acquire_default(
    api: &'static Api,
    mechs: &'static StaticOidSet,
) -> Result<OwnedCred, NegotiateError> {
    let mut raw: RawCred = ptr::null_mut();
    let mut minor = 0;
    // SAFETY: as in `acquire_from`, without a store.
    let major = unsafe {
        (api.acquire_cred)(
            &mut minor,
            ptr::null_mut(),
            GSS_C_INDEFINITE,
            mechs.as_ptr(),
            GSS_C_INITIATE,
            &mut raw,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if gss_error(major) {
        return Err(credential_error(api, "gss_acquire_cred", major, minor));
    }
    Ok(OwnedCred { api, raw })
}

/// Acquires for SPNEGO; when that finds no identity, asks the Kerberos mechanism directly for
/// the reason, because SPNEGO only says "cannot find mechanisms to negotiate" while Kerberos
/// says which cache or keytab it looked in and what was wrong with it.
fn explained(
    acquire: impl Fn(&'static StaticOidSet) -> Result<OwnedCred, NegotiateError>,
) -> Result<OwnedCred, NegotiateError> {
    match acquire(&SPNEGO_SET) {
        Err(NegotiateError::NoCredentials { detail }) => match acquire(&KRB5_SET) {
            Err(NegotiateError::NoCredentials { detail: reason })
            | Err(NegotiateError::Library { detail: reason, .. }) => {
                Err(NegotiateError::NoCredentials { detail: reason })
            }
            _ => Err(NegotiateError::NoCredentials { detail }),
        },
        other => other,
    }
}

/// `gss_acquire_cred_with_password`, or `kinit` into a private cache when the library lacks it.
fn acquire_with_password(
    api: &'static Api,
    user: &str,
    password: &super::Password,
) -> Result<(OwnedCred, Option<kinit::PrivateCache>), NegotiateError> {
    let name = OwnedName::import(api, user, &NT_USER_NAME)?;
    let Some(with_password) = api.acquire_cred_with_password else {
        let cache = kinit::PrivateCache::obtain(user, password)?;
        let cred = acquire_from(api, Some(&name), &[("ccache", cache.name())], &SPNEGO_SET)?;
        return Ok((cred, Some(cache)));
    };
    let mut buffer = BufferDesc::borrowing(password.expose().as_bytes());
    let mut raw: RawCred = ptr::null_mut();
    let mut minor = 0;
    // SAFETY: the password buffer borrows `password` for the call only (the library copies
    // it); the name is live; `raw` receives a credential released by `OwnedCred`.
    let major = unsafe {
        with_password(
            &mut minor,
            name.raw,
            &mut buffer,
            GSS_C_INDEFINITE,
            SPNEGO_SET.as_ptr(),
            GSS_C_INITIATE,
            &mut raw,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    if gss_error(major) {
        let detail = status_text(api, major, minor);
        return Err(NegotiateError::LoginFailed { detail });
    }
    Ok((OwnedCred { api, raw }, None))
}

/// The name of an in-memory ticket cache private to this process and this keytab, so that
/// every context made from the same keytab shares (and renews) the same tickets.
fn keytab_cache_name(path: &str, principal: Option<&str>) -> String {
    let mut hasher = DefaultHasher::new();
    (path, principal).hash(&mut hasher);
    format!("MEMORY:cntlm-keytab-{:016x}", hasher.finish())
}

/// One security context and what it needs.
pub(super) struct Context {
    api: &'static Api,
    /// The target service.
    target: OwnedName,
    /// Our credential; `None` never happens today but keeps `GSS_C_NO_CREDENTIAL` expressible.
    cred: Option<OwnedCred>,
    /// The `gss_ctx_id_t`, null until the first step.
    raw: RawCtx,
    /// A ticket cache we created with `kinit` and delete on drop (password fallback only).
    _private_cache: Option<kinit::PrivateCache>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No token produced yet.
    Fresh,
    /// A token was produced and the library wants the server's answer.
    ContinueNeeded,
    /// The library reported `GSS_S_COMPLETE`.
    Complete,
    /// A step failed; the context cannot be used again.
    Failed,
}

// SAFETY: the handles are owned by this value alone (never shared or aliased), only used
// through `&mut self` or on drop, and MIT krb5 and Heimdal allow a context, name or credential
// to be used from any thread as long as calls on one handle do not overlap (they keep no
// thread-local state tied to a handle). So moving the whole value to another thread is sound;
// it is deliberately not `Sync`.
unsafe impl Send for Context {}

impl Context {
    pub(super) fn new(
        service_principal: &str,
        creds: &KerberosCredentials,
    ) -> Result<Self, NegotiateError> {
        let api = api().map_err(|reason| NegotiateError::Unavailable { reason })?;
        // `service@host` is host-based (RFC 2743 §4.1); anything with a `/` is a full
        // Kerberos principal such as `HTTP/proxy.corp@CORP.EXAMPLE`.
        let name_type = if service_principal.contains('/') {
            &NT_KRB5_PRINCIPAL
        } else {
            &NT_HOSTBASED_SERVICE
        };
        let target = OwnedName::import(api, service_principal, name_type)?;
        let mut private_cache = None;
        let cred = match creds {
            KerberosCredentials::DefaultCache => explained(|mechs| acquire_default(api, mechs))?,
            KerberosCredentials::Cache(name) => {
                explained(|mechs| acquire_from(api, None, &[("ccache", name)], mechs))?
            }
            KerberosCredentials::Keytab { path, principal } => {
                let path = path.to_str().ok_or_else(|| NegotiateError::InvalidName {
                    name: path.display().to_string(),
                    detail: "keytab path is not valid UTF-8".into(),
                })?;
                let desired = principal
                    .as_deref()
                    .map(|p| OwnedName::import(api, p, &NT_USER_NAME))
                    .transpose()?;
                let cache = keytab_cache_name(path, principal.as_deref());
                let store = [("client_keytab", path), ("ccache", cache.as_str())];
                explained(|mechs| acquire_from(api, desired.as_ref(), &store, mechs))?
            }
            KerberosCredentials::Password { user, password } => {
                let (cred, cache) = acquire_with_password(api, user, password)?;
                private_cache = cache;
                cred
            }
        };
        Ok(Context {
            api,
            target,
            cred: Some(cred),
            raw: ptr::null_mut(),
            _private_cache: private_cache,
            state: State::Fresh,
        })
    }

    pub(super) fn is_complete(&self) -> bool {
        self.state == State::Complete
    }

    pub(super) fn step(&mut self, input: Option<&[u8]>) -> Result<NegotiateStep, NegotiateError> {
        match (self.state, input) {
            (State::Complete, _) => return Err(NegotiateError::AlreadyComplete),
            (State::Failed, _) => return Err(NegotiateError::AlreadyFailed),
            (State::ContinueNeeded, None) => return Err(NegotiateError::MissingServerToken),
            _ => {}
        }
        let mut input_buffer = input.map(BufferDesc::borrowing);
        let mut output = BufferDesc::empty();
        let mut minor = 0;
        let mut ret_flags = 0;
        let mut time_rec = 0;
        // SAFETY: every pointer is to a live local or to a handle this value owns; the input
        // buffer borrows `input` for the call; `output` is released by `take_buffer`.
        let major = unsafe {
            (self.api.init_sec_context)(
                &mut minor,
                self.cred.as_ref().map_or(ptr::null_mut(), |c| c.raw),
                &mut self.raw,
                self.target.raw,
                SPNEGO.as_ptr(),
                REQ_FLAGS,
                0,
                ptr::null_mut(),
                input_buffer.as_mut().map_or(ptr::null_mut(), ptr::from_mut),
                ptr::null_mut(),
                &mut output,
                &mut ret_flags,
                &mut time_rec,
            )
        };
        // SAFETY: `output` is empty or was filled by gss_init_sec_context.
        let token = unsafe { take_buffer(self.api, &mut output) };
        if gss_error(major) {
            self.state = State::Failed;
            return Err(credential_error(
                self.api,
                "gss_init_sec_context",
                major,
                minor,
            ));
        }
        self.state = if major & GSS_S_CONTINUE_NEEDED != 0 {
            State::ContinueNeeded
        } else {
            State::Complete
        };
        Ok(NegotiateStep {
            token: (!token.is_empty()).then_some(token),
            complete: self.state == State::Complete,
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if self.raw.is_null() {
            return;
        }
        let mut minor = 0;
        // SAFETY: `raw` came from gss_init_sec_context and is deleted exactly once; no output
        // token is wanted (GSS_C_NO_BUFFER).
        unsafe { (self.api.delete_sec_context)(&mut minor, &mut self.raw, ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keytab_caches_are_per_keytab_and_principal() {
        let a = keytab_cache_name("/k1", None);
        assert_eq!(a, keytab_cache_name("/k1", None));
        assert_ne!(a, keytab_cache_name("/k2", None));
        assert_ne!(a, keytab_cache_name("/k1", Some("robot")));
        assert!(a.starts_with("MEMORY:"));
    }
}
