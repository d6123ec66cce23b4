//! Declarations of the system GSSAPI (RFC 2744 C bindings) and their loading with `dlopen`.
//!
//! Written by hand from RFC 2744 and MIT's `gssapi.h` / `gssapi_ext.h`: the handful of types,
//! constants and entry points the Negotiate engine uses, so that building cntlm needs neither
//! Kerberos headers nor libclang. `unsafe` is allowed here and in the parent module only (see
//! there for why); each block states what it relies on.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use libloading::Library;

/// `OM_uint32`: status codes and flags.
pub(super) type OmUint32 = u32;

/// `gss_OID_desc`. Apple's headers pack GSSAPI structures to 2 bytes; everyone else uses C
/// layout.
#[cfg_attr(target_vendor = "apple", repr(C, packed(2)))]
#[cfg_attr(not(target_vendor = "apple"), repr(C))]
pub(super) struct OidDesc {
    pub(super) length: OmUint32,
    pub(super) elements: *const c_void,
}

/// `gss_buffer_desc`: a length and a pointer, owned by whoever filled it.
#[cfg_attr(target_vendor = "apple", repr(C, packed(2)))]
#[cfg_attr(not(target_vendor = "apple"), repr(C))]
pub(super) struct BufferDesc {
    pub(super) length: usize,
    pub(super) value: *mut c_void,
}

impl BufferDesc {
    pub(super) fn empty() -> Self {
        BufferDesc {
            length: 0,
            value: ptr::null_mut(),
        }
    }

    /// A buffer pointing at `bytes`, for input parameters the library only reads.
    pub(super) fn borrowing(bytes: &[u8]) -> Self {
        BufferDesc {
            length: bytes.len(),
            value: bytes.as_ptr().cast_mut().cast(),
        }
    }
}

/// `gss_OID_set_desc`.
#[cfg_attr(target_vendor = "apple", repr(C, packed(2)))]
#[cfg_attr(not(target_vendor = "apple"), repr(C))]
pub(super) struct OidSetDesc {
    pub(super) count: usize,
    pub(super) elements: *const OidDesc,
}

/// `gss_key_value_element_desc` (MIT `gssapi_ext.h`, for `gss_acquire_cred_from`).
#[repr(C)]
pub(super) struct KeyValueElement {
    pub(super) key: *const c_char,
    pub(super) value: *const c_char,
}

/// `gss_key_value_set_desc`.
#[repr(C)]
pub(super) struct KeyValueSet {
    pub(super) count: OmUint32,
    pub(super) elements: *const KeyValueElement,
}

/// Opaque handles (`gss_name_t`, `gss_cred_id_t`, `gss_ctx_id_t`); null is "none".
pub(super) type RawName = *mut c_void;
pub(super) type RawCred = *mut c_void;
pub(super) type RawCtx = *mut c_void;

/// An OID that lives for the whole program in read-only memory.
pub(super) struct StaticOid(OidDesc);

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
    pub(super) fn as_ptr(&'static self) -> *mut OidDesc {
        ptr::from_ref(&self.0).cast_mut()
    }
}

/// SPNEGO, 1.3.6.1.5.5.2 (RFC 4178): the mechanism HTTP `Negotiate` carries (RFC 4559 §4).
pub(super) static SPNEGO: StaticOid = StaticOid::new(b"\x2b\x06\x01\x05\x05\x02");
/// `GSS_C_NT_HOSTBASED_SERVICE`, 1.2.840.113554.1.2.1.4 (RFC 2743 §4.1): `service@host`.
pub(super) static NT_HOSTBASED_SERVICE: StaticOid =
    StaticOid::new(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x01\x04");
/// `GSS_C_NT_USER_NAME`, 1.2.840.113554.1.2.1.1: a user principal such as `alice@REALM`.
pub(super) static NT_USER_NAME: StaticOid =
    StaticOid::new(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x01\x01");
/// `GSS_KRB5_NT_PRINCIPAL_NAME`, 1.2.840.113554.1.2.2.1 (RFC 1964 §2.1.1): `HTTP/host@REALM`.
pub(super) static NT_KRB5_PRINCIPAL: StaticOid =
    StaticOid::new(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01");

/// The Kerberos V5 mechanism, 1.2.840.113554.1.2.2 (RFC 4121).
pub(super) static KRB5: StaticOid = StaticOid::new(b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02");

/// A one-mechanism set that lives for the whole program.
pub(super) struct StaticOidSet(OidSetDesc);
// SAFETY: as for `StaticOid`: points at a `'static` descriptor, read-only.
unsafe impl Sync for StaticOidSet {}

impl StaticOidSet {
    /// The `gss_OID_set` to pass; the library only reads it.
    pub(super) fn as_ptr(&'static self) -> *mut OidSetDesc {
        ptr::from_ref(&self.0).cast_mut()
    }
}

/// `{ SPNEGO }`: credentials acquired for it are usable by an SPNEGO context (MIT's mechglue
/// hands an SPNEGO context only the SPNEGO element of a credential).
pub(super) static SPNEGO_SET: StaticOidSet = StaticOidSet(OidSetDesc {
    count: 1,
    elements: &SPNEGO.0,
});
/// `{ Kerberos }`: only used to explain a failure (see `explained`).
pub(super) static KRB5_SET: StaticOidSet = StaticOidSet(OidSetDesc {
    count: 1,
    elements: &KRB5.0,
});

// Status codes, RFC 2744 §3.9.1.
pub(super) const GSS_S_CONTINUE_NEEDED: OmUint32 = 1;
pub(super) const GSS_C_CALLING_ERROR_MASK: OmUint32 = 0xFF00_0000;
pub(super) const GSS_C_ROUTINE_ERROR_MASK: OmUint32 = 0x00FF_0000;
pub(super) const GSS_S_BAD_NAME: OmUint32 = 2 << 16;
pub(super) const GSS_S_BAD_NAMETYPE: OmUint32 = 3 << 16;
pub(super) const GSS_S_NO_CRED: OmUint32 = 7 << 16;
pub(super) const GSS_S_DEFECTIVE_CREDENTIAL: OmUint32 = 10 << 16;
pub(super) const GSS_S_CREDENTIALS_EXPIRED: OmUint32 = 11 << 16;
pub(super) const GSS_C_GSS_CODE: c_int = 1;
pub(super) const GSS_C_MECH_CODE: c_int = 2;
pub(super) const GSS_C_INITIATE: c_int = 1;
/// `GSS_C_INDEFINITE`: no particular lifetime asked for.
pub(super) const GSS_C_INDEFINITE: OmUint32 = 0xFFFF_FFFF;
/// Requested context flags: none. Mutual authentication is not asked for because proxies do
/// not return the final SPNEGO token with their success (there is no header for it on a 200),
/// and replay/sequence protection only concern per-message tokens, which HTTP never uses.
pub(super) const REQ_FLAGS: OmUint32 = 0;

pub(super) fn gss_error(major: OmUint32) -> bool {
    major & (GSS_C_CALLING_ERROR_MASK | GSS_C_ROUTINE_ERROR_MASK) != 0
}

pub(super) type ImportNameFn =
    unsafe extern "C" fn(*mut OmUint32, *mut BufferDesc, *mut OidDesc, *mut RawName) -> OmUint32;
pub(super) type ReleaseNameFn = unsafe extern "C" fn(*mut OmUint32, *mut RawName) -> OmUint32;
pub(super) type InitSecContextFn = unsafe extern "C" fn(
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
pub(super) type DeleteSecContextFn =
    unsafe extern "C" fn(*mut OmUint32, *mut RawCtx, *mut BufferDesc) -> OmUint32;
pub(super) type ReleaseBufferFn = unsafe extern "C" fn(*mut OmUint32, *mut BufferDesc) -> OmUint32;
pub(super) type DisplayStatusFn = unsafe extern "C" fn(
    *mut OmUint32,
    OmUint32,
    c_int,
    *mut OidDesc,
    *mut OmUint32,
    *mut BufferDesc,
) -> OmUint32;
pub(super) type AcquireCredFn = unsafe extern "C" fn(
    *mut OmUint32,
    RawName,
    OmUint32,
    *mut OidSetDesc,
    c_int,
    *mut RawCred,
    *mut *mut OidSetDesc,
    *mut OmUint32,
) -> OmUint32;
pub(super) type AcquireCredWithPasswordFn = unsafe extern "C" fn(
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
pub(super) type AcquireCredFromFn = unsafe extern "C" fn(
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
pub(super) type ReleaseCredFn = unsafe extern "C" fn(*mut OmUint32, *mut RawCred) -> OmUint32;

/// The library and the entry points we use. Lives in a `static` and is never dropped, so the
/// function pointers stay valid for the life of the process.
pub(super) struct Api {
    /// Keeps the library mapped.
    pub(super) _library: Library,
    pub(super) import_name: ImportNameFn,
    pub(super) release_name: ReleaseNameFn,
    pub(super) init_sec_context: InitSecContextFn,
    pub(super) delete_sec_context: DeleteSecContextFn,
    pub(super) release_buffer: ReleaseBufferFn,
    pub(super) display_status: DisplayStatusFn,
    pub(super) acquire_cred: AcquireCredFn,
    pub(super) release_cred: ReleaseCredFn,
    /// MIT extension (also in recent Heimdal); `None` when absent.
    pub(super) acquire_cred_with_password: Option<AcquireCredWithPasswordFn>,
    /// MIT 1.11+ extension for named caches and client keytabs; `None` when absent.
    pub(super) acquire_cred_from: Option<AcquireCredFromFn>,
}

/// Where the GSSAPI library is looked for, in order: MIT's soname (Debian, Fedora, ...),
/// Heimdal's, then macOS's framework and a Homebrew MIT build.
pub(super) const LIBRARY_NAMES: &[&str] = &[
    "libgssapi_krb5.so.2",
    "libgssapi.so.3",
    "/System/Library/Frameworks/GSS.framework/GSS",
    "libgssapi_krb5.2.2.dylib",
];

pub(super) fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

pub(super) fn load() -> Result<Api, String> {
    load_from(LIBRARY_NAMES)
}

/// An error with its causes (libloading's `Display` is only "dlopen failed"; the `dlerror`
/// text saying which file is missing is its source).
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Opens the first of `names` that exists and resolves our entry points in it.
pub(super) fn load_from(names: &[&str]) -> Result<Api, String> {
    let mut failures = Vec::new();
    for name in names {
        // SAFETY: opening a system GSSAPI library runs its initialisers, which are written to
        // be loaded into any process; we open it once and never unload it.
        match unsafe { Library::new(*name) } {
            Ok(library) => return resolve(library).map_err(|e| format!("{name}: {e}")),
            Err(e) => failures.push(error_chain(&e)),
        }
    }
    Err(format!(
        "no GSSAPI library found (install MIT Kerberos, e.g. libgssapi-krb5-2): {}",
        failures.join("; ")
    ))
}

pub(super) fn resolve(library: Library) -> Result<Api, String> {
    /// Looks a symbol up and copies the function pointer out.
    ///
    /// SAFETY (for every use below): `T` is the function type declared above from the
    /// symbol's C prototype in RFC 2744 / MIT `gssapi_ext.h`.
    unsafe fn symbol<T: Copy>(library: &Library, name: &str) -> Result<T, String> {
        // SAFETY: see the function's contract.
        unsafe { library.get::<T>(name) }
            .map(|s| *s)
            .map_err(|e| format!("missing {name}: {}", error_chain(&e)))
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

/// The library's own words for a status pair (`gss_display_status`, RFC 2744 §5.11).
pub(super) fn status_text(api: &Api, major: OmUint32, minor: OmUint32) -> String {
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
            // MIT counts the C string terminator in the length; drop it.
            let text = String::from_utf8_lossy(&bytes);
            let line = text.trim_end_matches('\0').trim().to_owned();
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
pub(super) unsafe fn take_buffer(api: &Api, buffer: &mut BufferDesc) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_the_library_gets_a_reason_not_a_crash() {
        let err = load_from(&["libcntlm-test-no-such-gssapi.so.0"])
            .err()
            .expect("no such library");
        assert!(err.contains("no GSSAPI library found"), "{err}");
        assert!(err.contains("libcntlm-test-no-such-gssapi.so.0"), "{err}");
    }

    /// BER/DER contents octets of a dotted OID (X.690 §8.19), to check the constants.
    fn der(dotted: &str) -> Vec<u8> {
        let arcs: Vec<u64> = dotted
            .split('.')
            .map(|a| a.parse().expect("digits"))
            .collect();
        let mut out = vec![(arcs[0] * 40 + arcs[1]) as u8];
        for &arc in &arcs[2..] {
            let mut groups = vec![(arc & 0x7F) as u8];
            let mut rest = arc >> 7;
            while rest > 0 {
                groups.push((rest & 0x7F) as u8 | 0x80);
                rest >>= 7;
            }
            out.extend(groups.iter().rev());
        }
        out
    }

    fn bytes(oid: &'static StaticOid) -> &'static [u8] {
        let desc = &oid.0;
        // SAFETY: `elements` points at the `'static` byte string of `length` bytes it was
        // built from.
        unsafe { std::slice::from_raw_parts(desc.elements.cast::<u8>(), desc.length as usize) }
    }

    #[test]
    fn oids_are_the_registered_ones() {
        assert_eq!(bytes(&SPNEGO), der("1.3.6.1.5.5.2"));
        assert_eq!(bytes(&NT_HOSTBASED_SERVICE), der("1.2.840.113554.1.2.1.4"));
        assert_eq!(bytes(&NT_USER_NAME), der("1.2.840.113554.1.2.1.1"));
        assert_eq!(bytes(&NT_KRB5_PRINCIPAL), der("1.2.840.113554.1.2.2.1"));
        assert_eq!(bytes(&KRB5), der("1.2.840.113554.1.2.2"));
    }
}
