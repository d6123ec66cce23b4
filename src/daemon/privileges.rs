//! `-U uid|user`: give up root after the listeners are bound.
//!
//! CNTLM 0.92.3 semantics (cntlm-compat.md §2.1): a number sets both the uid and the gid to
//! that number, a name uses its uid and primary gid, uid 0 is refused, and without root the
//! option only earns a warning. Its bug is fixed: it never called setgroups(), so the daemon
//! kept root's supplementary groups; we replace them before setgid/setuid.

use std::ffi::CString;

use nix::unistd::{Gid, Uid, User};

use super::DaemonError;

/// The `-U` argument, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    /// All digits: this number is both the uid and the gid.
    Id(u32),
    /// Anything else: a user name from the system's user database.
    Name(String),
}

impl UserSpec {
    /// Parses a `-U` value; an empty one is an error.
    pub fn parse(spec: &str) -> Result<UserSpec, DaemonError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(DaemonError::EmptyUser);
        }
        if spec.bytes().all(|b| b.is_ascii_digit()) {
            return match spec.parse::<u32>() {
                Ok(id) => Ok(UserSpec::Id(id)),
                // Too many digits for a uid: no such user either way.
                Err(_) => Err(DaemonError::UnknownUser(spec.to_owned())),
            };
        }
        Ok(UserSpec::Name(spec.to_owned()))
    }

    /// The ids to switch to. Uid 0 is refused here, before anything changes.
    pub fn resolve(&self) -> Result<Identity, DaemonError> {
        let identity = match self {
            UserSpec::Id(id) => Identity {
                uid: *id,
                gid: *id,
                name: None,
            },
            UserSpec::Name(name) => {
                let user = User::from_name(name)
                    .map_err(|source| DaemonError::UserLookup {
                        user: name.clone(),
                        source,
                    })?
                    .ok_or_else(|| DaemonError::UnknownUser(name.clone()))?;
                Identity {
                    uid: user.uid.as_raw(),
                    gid: user.gid.as_raw(),
                    name: Some(user.name),
                }
            }
        };
        if identity.uid == 0 {
            return Err(DaemonError::RootRefused);
        }
        Ok(identity)
    }
}

/// Who the process becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// The user name, when `-U` named one: its supplementary groups come from the group
    /// database (initgroups), as a login would give them.
    pub name: Option<String>,
}

/// What [`drop_privileges`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivilegeDrop {
    /// The process now runs as this identity and cannot become root again.
    Dropped(Identity),
    /// Not running as root: nothing to drop (a warning was logged), as CNTLM does.
    NotRoot,
}

/// Applies `-U`: setgroups (or initgroups for a name), setgid, setuid, in that order, then
/// checks that root cannot be regained.
///
/// The spec is validated first in every case, so a typo is an error even when not root.
/// Any failure after the first change is an error the caller must treat as fatal: the
/// process may be half-changed.
pub fn drop_privileges(spec: &str) -> Result<PrivilegeDrop, DaemonError> {
    let identity = UserSpec::parse(spec)?.resolve()?;
    if !nix::unistd::geteuid().is_root() {
        tracing::warn!("not running as root: -U {spec} ignored");
        return Ok(PrivilegeDrop::NotRoot);
    }
    let uid = Uid::from_raw(identity.uid);
    let gid = Gid::from_raw(identity.gid);
    let step = |step: &'static str| move |source| DaemonError::SetIds { step, source };

    // Groups first: once the uid changes, we no longer may change them.
    match &identity.name {
        Some(name) => {
            let name = CString::new(name.as_bytes()).map_err(|_| {
                // Names from the user database never contain NUL.
                DaemonError::UnknownUser(name.clone())
            })?;
            set_groups_of(&name, gid).map_err(step("initgroups"))?;
        }
        None => set_only_group(gid).map_err(step("setgroups"))?,
    }
    nix::unistd::setgid(gid).map_err(step("setgid"))?;
    nix::unistd::setuid(uid).map_err(step("setuid"))?;

    // CERT POS37-C: verify the drop cannot be undone.
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(DaemonError::RegainedRoot);
    }
    tracing::info!(
        uid = identity.uid,
        gid = identity.gid,
        "dropped root privileges"
    );
    Ok(PrivilegeDrop::Dropped(identity))
}

#[cfg(not(any(target_vendor = "apple", target_os = "redox", target_os = "haiku")))]
fn set_only_group(gid: Gid) -> nix::Result<()> {
    nix::unistd::setgroups(&[gid])
}

#[cfg(any(target_vendor = "apple", target_os = "redox", target_os = "haiku"))]
fn set_only_group(_gid: Gid) -> nix::Result<()> {
    Err(nix::errno::Errno::ENOTSUP)
}

#[cfg(not(any(target_vendor = "apple", target_os = "redox", target_os = "haiku")))]
fn set_groups_of(name: &std::ffi::CStr, gid: Gid) -> nix::Result<()> {
    nix::unistd::initgroups(name, gid)
}

#[cfg(any(target_vendor = "apple", target_os = "redox", target_os = "haiku"))]
fn set_groups_of(_name: &std::ffi::CStr, _gid: Gid) -> nix::Result<()> {
    Err(nix::errno::Errno::ENOTSUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_sets_both_uid_and_gid() {
        let spec = UserSpec::parse("4321").expect("parses");
        assert_eq!(spec, UserSpec::Id(4321));
        let identity = spec.resolve().expect("resolves");
        assert_eq!(
            (identity.uid, identity.gid, identity.name),
            (4321, 4321, None)
        );
    }

    #[test]
    fn a_name_uses_its_uid_and_primary_gid() {
        // `nobody` exists on every Debian system (65534:65534 there).
        let want = User::from_name("nobody")
            .expect("passwd")
            .expect("nobody exists");
        let identity = UserSpec::parse(" nobody ")
            .expect("parses")
            .resolve()
            .expect("resolves");
        assert_eq!(identity.uid, want.uid.as_raw());
        assert_eq!(identity.gid, want.gid.as_raw());
        assert_eq!(identity.name.as_deref(), Some("nobody"));
    }

    #[test]
    fn uid_0_is_refused_by_number_and_by_name() {
        for spec in ["0", "000", "root"] {
            let result = UserSpec::parse(spec).and_then(|s| s.resolve());
            assert!(
                matches!(result, Err(DaemonError::RootRefused)),
                "{spec}: {result:?}"
            );
        }
    }

    #[test]
    fn bad_specs_are_errors() {
        assert!(matches!(UserSpec::parse("  "), Err(DaemonError::EmptyUser)));
        assert!(matches!(
            UserSpec::parse("99999999999"),
            Err(DaemonError::UnknownUser(_))
        ));
        let result = drop_privileges("no-such-user-cntlm-test");
        assert!(
            matches!(result, Err(DaemonError::UnknownUser(_))),
            "{result:?}"
        );
    }

    /// Set in the environment of the child process the next test starts.
    const CHILD_SPEC: &str = "CNTLM_TEST_DROP_PRIVILEGES_SPEC";

    /// Runs only inside the child started by `drop_privileges_in_a_child_process`: it really
    /// drops privileges (which cannot be undone) and prints the ids it ended up with.
    #[test]
    fn drop_privileges_child() {
        let Ok(spec) = std::env::var(CHILD_SPEC) else {
            return;
        };
        let outcome = drop_privileges(&spec).expect("drop succeeds as root");
        assert!(matches!(outcome, PrivilegeDrop::Dropped(_)), "{outcome:?}");
        let groups: Vec<String> = nix::unistd::getgroups()
            .expect("getgroups")
            .iter()
            .map(|g| g.as_raw().to_string())
            .collect();
        println!(
            "IDS {} {} {} {} {}",
            nix::unistd::getuid(),
            nix::unistd::geteuid(),
            nix::unistd::getgid(),
            nix::unistd::getegid(),
            groups.join(",")
        );
    }

    /// The real setgroups/setgid/setuid, in a child process so the test runner keeps root.
    #[test]
    fn drop_privileges_in_a_child_process() {
        if std::env::var_os(CHILD_SPEC).is_some() {
            return;
        }
        if !nix::unistd::geteuid().is_root() {
            let result = drop_privileges("nobody").expect("not root: warning only");
            assert_eq!(result, PrivilegeDrop::NotRoot);
            return;
        }
        let nobody = User::from_name("nobody")
            .expect("passwd")
            .expect("nobody exists");
        let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
        for (spec, want) in [
            ("nobody", format!("IDS {uid} {uid} {gid} {gid} {gid}")),
            ("4321", "IDS 4321 4321 4321 4321 4321".to_owned()),
        ] {
            let exe = std::env::current_exe().expect("test binary path");
            let output = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "daemon::privileges::tests::drop_privileges_child",
                ])
                .args(["--nocapture", "--test-threads=1"])
                .env(CHILD_SPEC, spec)
                .output()
                .expect("child test runs");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "child failed: {stdout}");
            // libtest prints the test name on the same line, before the child's output.
            let line = stdout
                .lines()
                .find_map(|l| l.find("IDS ").map(|at| &l[at..]))
                .unwrap_or("");
            assert_eq!(line, want, "-U {spec}");
        }
    }
}
