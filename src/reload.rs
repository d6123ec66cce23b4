//! The configuration as a re-readable source: where the file is, how to read it, and the
//! SIGHUP re-read ([`reload_config`]) that validates a new `Config` the same way start-up does.
//!
//! Part of the binary (declared in `main.rs`), not the library: it reads files.

use std::path::{Path, PathBuf};

use cntlm::auth::Password;
use cntlm::cli::Args;
use cntlm::config::Config;
use cntlm::config::report::ConfigError;
use cntlm::config::settings::{Sources, check_credentials, load_sources};

/// Where the config file came from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// `-c FILE`.
    Named(PathBuf),
    /// The system file, found without `-c`.
    SystemDefault(PathBuf),
    /// `-c /dev/null`, or no system file.
    None,
}

impl ConfigSource {
    /// `-c FILE`, else the system file when it exists; `-c /dev/null` means none.
    pub fn locate(named: Option<&Path>) -> ConfigSource {
        match named {
            Some(path) if path == Path::new("/dev/null") => ConfigSource::None,
            Some(path) => ConfigSource::Named(path.to_path_buf()),
            None => match system_config() {
                Some(path) if path.exists() => ConfigSource::SystemDefault(path),
                _ => ConfigSource::None,
            },
        }
    }

    /// The same source with an absolute path, so a re-read after the daemon's `chdir /`
    /// still finds a file named relative to the starting directory.
    fn absolute(&self) -> ConfigSource {
        match self {
            ConfigSource::Named(path) => {
                ConfigSource::Named(std::path::absolute(path).unwrap_or_else(|_| path.clone()))
            }
            other => other.clone(),
        }
    }

    /// The file's name for messages and its contents; `None` without a file.
    pub fn read(&self) -> Result<Option<(String, Vec<u8>)>, ReloadError> {
        match self {
            ConfigSource::Named(path) | ConfigSource::SystemDefault(path) => {
                let bytes = std::fs::read(path).map_err(|source| ReloadError::Read {
                    path: path.clone(),
                    source,
                })?;
                Ok(Some((path.display().to_string(), bytes)))
            }
            ConfigSource::None => Ok(None),
        }
    }

    /// "config file X", for the log.
    pub fn describe(&self) -> String {
        match self {
            ConfigSource::Named(path) => format!("config file {}", path.display()),
            ConfigSource::SystemDefault(path) => {
                format!("config file {} (the default)", path.display())
            }
            ConfigSource::None => "no config file".to_string(),
        }
    }
}

/// The file CNTLM reads without `-c`.
#[cfg(unix)]
fn system_config() -> Option<PathBuf> {
    Some(PathBuf::from("/etc/cntlm.conf"))
}

/// The file CNTLM reads without `-c`: `cntlm.ini` beside `cntlm.exe` (not tested here).
#[cfg(windows)]
fn system_config() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.join("cntlm.ini"))
}

/// Neither Unix nor Windows: no system file.
#[cfg(not(any(unix, windows)))]
fn system_config() -> Option<PathBuf> {
    None
}

/// Why a configuration re-read was rejected; the running configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read (gone, or not readable by the `-U` user).
    #[error("cannot read config file {path}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read and is not usable.
    #[error("{} error(s) in the configuration", errors.len())]
    Invalid {
        /// Every error, with file and line.
        errors: Vec<ConfigError>,
    },
}

/// What a re-read starts from: the start-up command line, the file, and the `-I` answer.
#[derive(Debug, Clone)]
pub struct ReloadSource {
    /// The command line as given at start-up (its flags still override the file).
    pub args: Args,
    /// The config file, with an absolute path.
    pub config: ConfigSource,
    /// The password typed at `-I`: nobody is there to type it again.
    pub prompted_password: Option<Password>,
}

impl ReloadSource {
    /// Captures what a later re-read needs.
    pub fn new(args: &Args, config: &ConfigSource, prompted: Option<Password>) -> Self {
        ReloadSource {
            args: args.clone(),
            config: config.absolute(),
            prompted_password: prompted,
        }
    }
}

/// Reads and validates the configuration again, as at start-up: the file, then the
/// start-up command line over it, then the `-I` password. Warnings are logged; errors reject
/// the whole new configuration.
///
/// This is the seam the proxy's reload plugs into: what it returns is what would replace
/// the running `Arc<Config>`.
pub fn reload_config(source: &ReloadSource) -> Result<Config, ReloadError> {
    let contents = source.config.read()?;
    let Sources {
        mut settings,
        mut report,
        ..
    } = load_sources(
        &source.args,
        contents
            .as_ref()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice())),
    );
    if let Some(password) = &source.prompted_password {
        settings.password = Some(password.clone());
    }
    let config = settings.resolve();
    report.extend(check_credentials(&config));
    if !report.is_usable() {
        return Err(ReloadError::Invalid {
            errors: report.errors,
        });
    }
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::parse_from_argv(std::iter::once("cntlm").chain(argv.iter().copied()))
            .expect("valid command line")
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("cntlm.conf");
        std::fs::write(&path, text).expect("config written");
        path
    }

    #[test]
    fn reload_reads_the_file_again_under_the_start_up_command_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "Listen 3128\nProxy parent:8080\n");
        let start = args(&["-c", path.to_str().expect("utf-8"), "-l", "3129"]);
        let source =
            ReloadSource::new(&start, &ConfigSource::locate(start.config.as_deref()), None);
        write(dir.path(), "Listen 3128\nProxy other:9090\n");
        let config = reload_config(&source).expect("valid");
        assert_eq!(config.parents[0].to_string(), "other:9090");
        assert!(
            config.listen.iter().any(|a| a.port() == 3129),
            "-l still applies: {:?}",
            config.listen
        );
    }

    #[test]
    fn reload_rejects_an_invalid_file_with_its_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "Listen 3128\n");
        let start = args(&["-c", path.to_str().expect("utf-8")]);
        let source =
            ReloadSource::new(&start, &ConfigSource::locate(start.config.as_deref()), None);
        write(dir.path(), "Listen 31a28\n");
        match reload_config(&source) {
            Err(ReloadError::Invalid { errors }) => {
                assert_eq!(errors.len(), 1);
                assert!(errors[0].to_string().contains("31a28"), "{}", errors[0]);
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        std::fs::remove_file(&path).expect("removed");
        assert!(matches!(
            reload_config(&source),
            Err(ReloadError::Read { .. })
        ));
    }

    #[test]
    fn reload_keeps_the_prompted_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "Username u\nProxy parent:8080\n");
        let start = args(&["-c", path.to_str().expect("utf-8"), "-I"]);
        let source = ReloadSource::new(
            &start,
            &ConfigSource::locate(start.config.as_deref()),
            Some(Password::new("typed")),
        );
        let config = reload_config(&source).expect("valid");
        assert_eq!(
            config.auth.credentials.password,
            Some(Password::new("typed"))
        );
    }

    #[test]
    fn a_relative_config_path_is_made_absolute_for_reloads() {
        let source = ReloadSource::new(
            &args(&[]),
            &ConfigSource::Named(PathBuf::from("cntlm.conf")),
            None,
        );
        match source.config {
            ConfigSource::Named(path) => assert!(path.is_absolute(), "{}", path.display()),
            other => panic!("{other:?}"),
        }
    }
}
