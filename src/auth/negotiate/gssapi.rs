//! The system GSSAPI (RFC 2744 C bindings), opened at run time with `dlopen`.
//!
//! Why this module uses `unsafe`: the Kerberos implementation we must use is the system's (it
//! owns the user's ticket cache, `krb5.conf` and keytabs), and it is only reachable through C.
//! Linking it at build time would need its headers and libclang on every build machine and
//! would stop the binary from starting where it is absent, so the library is opened at run time
//! and the dozen declarations below are written by hand from RFC 2744 and MIT's `gssapi.h` /
//! `gssapi_ext.h`. Every `unsafe` block is a call into that library or the `Send` claim on the
//! handle wrapper; each states what it relies on. No other module of cntlm uses `unsafe`.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int, c_void};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ptr;
use std::sync::OnceLock;

use libloading::Library;

use super::{KerberosCredentials, NegotiateError, NegotiateStep, kinit};

/// `OM_uint32`: status codes and flags.
type OmUint32 = u32;

/// `gss_OID_desc`. Apple's headers pack GSSAPI structures to 2 bytes; everyone else uses C
/// layout.
#[cfg_attr(target_vendor = "apple", repr(C, packed(2)))]
#[cfg_attr(not(target_vendor = "apple"), repr(C))]
struct OidDesc {
    length: OmUint32,
    elements: *const c_void,
}

/// `gss_buffer_desc`: a length and a pointer, owned by whoever filled it.
#[cfg_attr(target_vendor = "apple", repr(C, packed(2)))]
#[cfg_attr(not(target_vendor = "apple"), repr(C))]
struct BufferDesc {
    length: usize,
    value: *mut c_void,
}

impl BufferDesc {
    fn empty() -> Self {
        BufferDesc {
            length: 0,
            value: ptr::null_mut(),
        }
    }

    /// A buffer pointing at `bytes`, for input parameters the library only reads.
    fn borrowing(bytes: &[u8]) -> Self {
        BufferDesc {
            length: bytes.len(),
            value: bytes.as_ptr().cast_mut().cast(),
        }
    }
}

/// `gss_OID_set_desc`.
#[cfg_attr(target_vendor = "apple", repr(C, packed(2)))]
#[cfg_attr(not(target_vendor = "apple"), repr(C))]
struct OidSetDesc {
    count: usize,
    elements: *const OidDesc,
}

/// `gss_key_value_element_desc` (MIT `gssapi_ext.h`, for `gss_acquire_cred_from`).
#[repr(C)]
struct KeyValueElement {
    key: *const c_char,
    value: *const c_char,
}

/// `gss_key_value_set_desc`.
#[repr(C)]
struct KeyValueSet {
    count: OmUint32,
    elements: *const KeyValueElement,
}

/// Opaque handles (`gss_name_t`, `gss_cred_id_t`, `gss_ctx_id_t`); null is "none".
type RawName = *mut c_void;
type RawCred = *mut c_void;
type RawCtx = *mut c_void;

/// An OID that lives for the whole program in read-only memory.
struct StaticOid(OidDesc);

// SAFETY: the descriptor points at a `'static` byte string and nobody writes through it (the
// library takes OIDs as input only), so sharing it between threads is sound.
unsafe impl Sync for StaticOid {}

impl StaticOid {
    const fn new(der: &'static [u8]) -> Self {
        StaticOid(OidDesc {
            length: der.len() as OmUint32,
            elements: der.as_ptr().cast(),
        })
    }

    /// The `gss_OID` to pass; the C prototypes are not const-correct, the library only reads.
    fn as_ptr(&'static self) -> *mut OidDesc {
        ptr::from_ref(&self.0).cast_mut()
    }
}

/// SPNEGO, 1.3.6.1.5.5.2 (RFC 4178): the mechanism HTTP `Negotiate` carries (RFC 4559 §4).
static SPNEGO: StaticOid = StaticOid::new(b"\x2b\x06\x01\x05\x05\x02");
/// `GSS_C_NT_HOSTBASED_SERVICE`, 1.2.840.113554.1.2.1.4 (RFC 2743 §4.1): `service@host`.
static NT_HOSTBASED_SERVICE: StaticOid =
    StaticOid::new(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x01\x04");
/// `GSS_C_NT_USER_NAME`, 1.2.840.113554.1.2.1.1: a user principal such as `alice@REALM`.
static NT_USER_NAME: StaticOid = StaticOid::new(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x01\x01");
/// `GSS_KRB5_NT_PRINCIPAL_NAME`, 1.2.840.113554.1.2.2.1 (RFC 1964 §2.1.1): `HTTP/host@REALM`.
static NT_KRB5_PRINCIPAL: StaticOid = StaticOid::new(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01");

/// The Kerberos V5 mechanism, 1.2.840.113554.1.2.2 (RFC 4121).
static KRB5: StaticOid = StaticOid::new(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02");

/// A one-mechanism set that lives for the whole program.
struct StaticOidSet(OidSetDesc);
// SAFETY: as for `StaticOid`: points at a `'static` descriptor, read-only.
unsafe impl Sync for StaticOidSet {}

impl StaticOidSet {
    /// The `gss_OID_set` to pass; the library only reads it.
    fn as_ptr(&'static self) -> *mut OidSetDesc {
        ptr::from_ref(&self.0).cast_mut()
    }
}

/// `{ SPNEGO }`: credentials acquired for it are usable by an SPNEGO context (MIT's mechglue
/// hands an SPNEGO context only the SPNEGO element of a credential).
static SPNEGO_SET: StaticOidSet = StaticOidSet(OidSetDesc {
    count: 1,
    elements: &SPNEGO.0,
});
/// `{ Kerberos }`: only used to explain a failure (see `explained`).
static KRB5_SET: StaticOidSet = StaticOidSet(OidSetDesc {
    count: 1,
    elements: &KRB5.0,
});

// Status codes, RFC 2744 §3.9.1.
const GSS_S_CONTINUE_NEEDED: OmUint32 = 1;
const GSS_C_CALLING_ERROR_MASK: OmUint32 = 0xFF00_0000;
const GSS_C_ROUTINE_ERROR_MASK: OmUint32 = 0x00FF_0000;
const GSS_S_BAD_NAME: OmUint32 = 2 << 16;
const GSS_S_BAD_NAMETYPE: OmUint32 = 3 << 16;
const GSS_S_NO_CRED: OmUint32 = 7 << 16;
const GSS_S_DEFECTIVE_CREDENTIAL: OmUint32 = 10 << 16;
const GSS_S_CREDENTIALS_EXPIRED: OmUint32 = 11 << 16;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;
const GSS_C_INITIATE: c_int = 1;
/// `GSS_C_INDEFINITE`: no particular lifetime asked for.
const GSS_C_INDEFINITE: OmUint32 = 0xFFFF_FFFF;
/// Requested context flags: none. Mutual authentication is not asked for because proxies do
/// not return the final SPNEGO token with their success (there is no header for it on a 200),
/// and replay/sequence protection only concern per-message tokens, which HTTP never uses.
const REQ_FLAGS: OmUint32 = 0;

fn gss_error(major: OmUint32) -> bool {
    major & (GSS_C_CALLING_ERROR_MASK | GSS_C_ROUTINE_ERROR_MASK) != 0
}

type ImportNameFn =
    unsafe extern "C" fn(*mut OmUint32, *mut BufferDesc, *mut OidDesc, *mut RawName) -> OmUint32;
type ReleaseNameFn = unsafe extern "C" fn(*mut OmUint32, *mut RawName) -> OmUint32;
type InitSecContextFn = unsafe extern "C" fn(
    *mut OmUint32,     // minor_status
    RawCred,           // claimant_cred_handle
    *mut RawCtx,       // context_handle
    RawName,           // target_name
    *mut OidDesc,      // mech_type
    OmUint32,          // req_flags
    OmUint32,          // time_req
    *mut c_void,       // input_chan_bindings
    *mut BufferDesc,   // input_token
    *mut *mut OidDesc, // actual_mech_type
    *mut BufferDesc,   // output_token
    *mut OmUint32,     // ret_flags
    *mut OmUint32,     // time_rec
) -> OmUint32;
type DeleteSecContextFn =
    unsafe extern "C" fn(*mut OmUint32, *mut RawCtx, *mut BufferDesc) -> OmUint32;
type ReleaseBufferFn = unsafe extern "C" fn(*mut OmUint32, *mut BufferDesc) -> OmUint32;
type DisplayStatusFn = unsafe extern "C" fn(
    *mut OmUint32,
    OmUint32,
    c_int,
    *mut OidDesc,
    *mut OmUint32,
    *mut BufferDesc,
) -> OmUint32;
type AcquireCredFn = unsafe extern "C" fn(
    *mut OmUint32,
    RawName,
    OmUint32,
    *mut OidSetDesc,
    c_int,
    *mut RawCred,
    *mut *mut OidSetDesc,
    *mut OmUint32,
) -> OmUint32;
type AcquireCredWithPasswordFn = unsafe extern "C" fn(
    *mut OmUint32,
    RawName,
    *mut BufferDesc,
    OmUint32,
    *mut OidSetDesc,
    c_int,
    *mut RawCred,
    *mut *mut OidSetDesc,
    *mut OmUint32,
) -> OmUint32;
type AcquireCredFromFn = unsafe extern "C" fn(
    *mut OmUint32,
    RawName,
    OmUint32,
    *mut OidSetDesc,
    c_int,
    *const KeyValueSet,
    *mut RawCred,
    *mut *mut OidSetDesc,
    *mut OmUint32,
) -> OmUint32;
type ReleaseCredFn = unsafe extern "C" fn(*mut OmUint32, *mut RawCred) -> OmUint32;

/// The library and the entry points we use. Lives in a `static` and is never dropped, so the
/// function pointers stay valid for the life of the process.
struct Api {
    /// Keeps the library mapped.
    _library: Library,
    import_name: ImportNameFn,
    release_name: ReleaseNameFn,
    init_sec_context: InitSecContextFn,
    delete_sec_context: DeleteSecContextFn,
    release_buffer: ReleaseBufferFn,
    display_status: DisplayStatusFn,
    acquire_cred: AcquireCredFn,
    release_cred: ReleaseCredFn,
    /// MIT extension (also in recent Heimdal); `None` when absent.
    acquire_cred_with_password: Option<AcquireCredWithPasswordFn>,
    /// MIT 1.11+ extension for named caches and client keytabs; `None` when absent.
    acquire_cred_from: Option<AcquireCredFromFn>,
}

/// Where the GSSAPI library is looked for, in order: MIT's soname (Debian, Fedora, ...),
/// Heimdal's, then macOS's framework and a Homebrew MIT build.
const LIBRARY_NAMES: &[&str] = &[
    "libgssapi_krb5.so.2",
    "libgssapi.so.3",
    "/System/Library/Frameworks/GSS.framework/GSS",
    "libgssapi_krb5.2.2.dylib",
];

fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Api, String> {
    let mut failures = Vec::new();
    for name in LIBRARY_NAMES {
        // SAFETY: opening a system GSSAPI library runs its initialisers, which are written to
        // be loaded into any process; we open it once and never unload it.
        match unsafe { Library::new(*name) } {
            Ok(library) => return resolve(library).map_err(|e| format!("{name}: {e}")),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(format!(
        "no GSSAPI library found (install MIT Kerberos, e.g. libgssapi-krb5-2): {}",
        failures.join("; ")
    ))
}

fn resolve(library: Library) -> Result<Api, String> {
    /// Looks a symbol up and copies the function pointer out.
    ///
    /// SAFETY (for every use below): `T` is the function type declared above from the
    /// symbol's C prototype in RFC 2744 / MIT `gssapi_ext.h`.
    unsafe fn symbol<T: Copy>(library: &Library, name: &str) -> Result<T, String> {
        // SAFETY: see the function's contract.
        unsafe { library.get::<T>(name) }
            .map(|s| *s)
            .map_err(|e| format!("missing {name}: {e}"))
    }
    // SAFETY: each type matches its symbol's prototype (see `symbol`).
    unsafe {
        Ok(Api {
            import_name: symbol(&library, "gss_import_name")?,
            release_name: symbol(&library, "gss_release_name")?,
            init_sec_context: symbol(&library, "gss_init_sec_context")?,
            delete_sec_context: symbol(&library, "gss_delete_sec_context")?,
            release_buffer: symbol(&library, "gss_release_buffer")?,
            display_status: symbol(&library, "gss_display_status")?,
            acquire_cred: symbol(&library, "gss_acquire_cred")?,
            release_cred: symbol(&library, "gss_release_cred")?,
            acquire_cred_with_password: symbol(&library, "gss_acquire_cred_with_password").ok(),
            acquire_cred_from: symbol(&library, "gss_acquire_cred_from").ok(),
            _library: library,
        })
    }
}

/// `Ok` when the library loaded, else why not.
pub(super) fn availability() -> Result<(), String> {
    api().map(|_| ())
}

/// The library's own words for a status pair (`gss_display_status`, RFC 2744 §5.11).
fn status_text(api: &Api, major: OmUint32, minor: OmUint32) -> String {
    let mut parts = Vec::new();
    for (code, kind) in [(major, GSS_C_GSS_CODE), (minor, GSS_C_MECH_CODE)] {
        if code == 0 && kind == GSS_C_MECH_CODE {
            continue;
        }
        let mut message_context: OmUint32 = 0;
        // The library hands messages out one at a time; a handful is all there ever is.
        for _ in 0..8 {
            let mut ignored_minor = 0;
            let mut text = BufferDesc::empty();
            // SAFETY: all pointers are to live locals; `text` is released below.
            let status = unsafe {
                (api.display_status)(
                    &mut ignored_minor,
                    code,
                    kind,
                    ptr::null_mut(),
                    &mut message_context,
                    &mut text,
                )
            };
            if gss_error(status) {
                break;
            }
            // SAFETY: on success `text` holds a library-owned buffer of `length` bytes.
            let bytes = unsafe { take_buffer(api, &mut text) };
            let line = String::from_utf8_lossy(&bytes).trim().to_owned();
            if !line.is_empty() {
                parts.push(line);
            }
            if message_context == 0 {
                break;
            }
        }
    }
    if parts.is_empty() {
        format!("major status {major:#010x}, minor status {minor}")
    } else {
        parts.join(": ")
    }
}

/// Copies a library-owned output buffer and releases it.
///
/// # Safety
/// `buffer` is empty or was filled by the library (`value` points at `length` readable bytes
/// that `gss_release_buffer` frees).
unsafe fn take_buffer(api: &Api, buffer: &mut BufferDesc) -> Vec<u8> {
    let bytes = if buffer.value.is_null() || buffer.length == 0 {
        Vec::new()
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts(buffer.value.cast::<u8>(), buffer.length) }.to_vec()
    };
    let mut minor = 0;
    // SAFETY: releasing a library-filled (or empty) buffer once; it is emptied afterwards.
    unsafe { (api.release_buffer)(&mut minor, buffer) };
    *buffer = BufferDesc::empty();
    bytes
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
