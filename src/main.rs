//! The `cntlm` binary: arguments -> config -> (-H / --check-config) -> logging -> runtime ->
//! `cntlm::run` -> exit code.
//!
//! Everything that touches the outside world before the proxy starts lives here: argv, the
//! config file, the terminal (`-I`, `-H`), signals. The library gets a finished `Config`.
//! Exit codes follow CNTLM where scripts see them: 0 for `-H`, 1 for `-h`, for a bad
//! command line and for an unusable configuration.
//!
//! Running as a service (daemon, `-P`, `-U`, syslog, signals, the SIGHUP re-read) is in
//! `service.rs`, the SIGHUP re-read in `reload.rs`; `-M` is `cntlm::magic`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use cntlm::auth::Password;
use cntlm::auth::ntlm::hashes;
use cntlm::cli::{self, Args};
use cntlm::config::keywords::{self, FileSettings};
use cntlm::config::report::{Origin, Report};
use cntlm::config::settings::{Settings, Sources, check_credentials, load_sources};

mod reload;
mod service;

use reload::{ConfigSource, ReloadSource};

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("cntlm: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    let args = match Args::parse_from_argv(std::env::args_os()) {
        Ok(args) => args,
        Err(err) => {
            // clap's message, but CNTLM's exit code for a bad command line.
            let _ = err.print();
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.help {
        // CNTLM: banner on stdout, usage on stderr, exit 1.
        print!("{}", cli::banner());
        eprint!("\n{}", cli::USAGE);
        return Ok(ExitCode::FAILURE);
    }
    if args.long_help {
        print!("{}\n{}", cli::banner(), cli::USAGE);
        return Ok(ExitCode::SUCCESS);
    }

    let source = ConfigSource::locate(args.config.as_deref());
    // The start-up read fails with the same message a reload would log.
    let contents = source.read()?;
    let Sources {
        settings,
        file,
        report,
    } = load_sources(
        &args,
        contents
            .as_ref()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice())),
    );

    if args.check_config {
        return Ok(check_config(&args, &source, &file, settings, report));
    }
    if !report.is_usable() {
        for err in &report.errors {
            eprintln!("cntlm: {err}");
        }
        return Ok(ExitCode::FAILURE);
    }
    if let Some(url) = &args.route {
        return explain_route(settings, url);
    }
    if args.hashes {
        for warning in &report.warnings {
            eprintln!("cntlm: warning: {warning}");
        }
        return print_hashes(settings);
    }
    if let Some(url) = &args.magic {
        for warning in &report.warnings {
            eprintln!("cntlm: warning: {warning}");
        }
        return magic(url, settings);
    }
    run_proxy(&args, &source, settings, report)
}

/// `--route URL`: prints how a request to `url` would leave; 0 when a usable route exists.
fn explain_route(settings: Settings, url: &str) -> anyhow::Result<ExitCode> {
    let config = std::sync::Arc::new(settings.resolve());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(cntlm::proxy::explain::explain(config, url))?;
    print!("{}", report.text);
    Ok(if report.usable {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--check-config`: every warning and error, advice, a summary; 0 only when usable.
fn check_config(
    args: &Args,
    source: &ConfigSource,
    file: &FileSettings,
    settings: Settings,
    mut report: Report,
) -> ExitCode {
    let mut config = settings.resolve();
    if args.interactive && config.auth.credentials.password.is_none() {
        // -I will supply a password at start; judge the rest as if it had.
        config.auth.credentials.password = Some(Password::new("-I"));
    }
    report.extend(check_credentials(&config));
    println!("cntlm: checking {}", source.describe());
    // One list in file order, so the output reads alongside the file.
    let mut lines: Vec<(usize, String)> = report
        .warnings
        .iter()
        .map(|w| (line_of(w.origin.as_ref()), format!("warning: {w}")))
        .chain(
            report
                .errors
                .iter()
                .map(|e| (line_of(Some(&e.origin)), format!("error: {e}"))),
        )
        .collect();
    lines.sort_by_key(|(line, _)| *line);
    for (_, text) in &lines {
        println!("{text}");
    }
    if let Some(advice) = keywords::hash_format_advice(file) {
        println!("note: {advice}");
    }
    if !report.is_usable() {
        println!(
            "{} error(s), {} warning(s): the configuration is not usable",
            report.errors.len(),
            report.warnings.len()
        );
        return ExitCode::FAILURE;
    }
    let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
    let parents: Vec<String> = config.parents.iter().map(ToString::to_string).collect();
    println!(
        "configuration OK ({} warning(s)): listen {}; {}; Auth {}",
        report.warnings.len(),
        listen.join(", "),
        if parents.is_empty() {
            "no parent proxy (DIRECT)".to_string()
        } else {
            format!("parents {}", parents.join(", "))
        },
        match config.auth.scheme {
            cntlm::config::AuthChoice::Ntlm => config.auth.dialect.name(),
            cntlm::config::AuthChoice::Negotiate => "Negotiate",
            cntlm::config::AuthChoice::Basic => "Basic",
            cntlm::config::AuthChoice::Auto => "Auto",
        }
    );
    ExitCode::SUCCESS
}

/// Sort key for diagnostics: file lines first, in order; the rest after.
fn line_of(origin: Option<&Origin>) -> usize {
    match origin {
        Some(Origin::File { line, .. }) => *line,
        _ => usize::MAX,
    }
}

/// `-H`: `Password: ` on stdout, read the answer, then the three hash lines (byte for byte
/// CNTLM's). The answer wins over `-p`, which wins over `Password`; an empty answer keeps
/// the earlier value, and an empty password is refused (CNTLM prints hashes of nothing).
fn print_hashes(settings: Settings) -> anyhow::Result<ExitCode> {
    let password = match ask_password(&settings)? {
        PasswordAnswer::Typed(p) | PasswordAnswer::Earlier(p) => p,
        PasswordAnswer::Empty => bail!("an empty password is refused"),
        PasswordAnswer::None => bail!("no password given (type it at the prompt, or use -p)"),
    };
    let mut stdout = std::io::stdout().lock();
    let format = settings.hash_format.unwrap_or_default();
    let user = settings.user.unwrap_or_default();
    let domain = settings.domain.unwrap_or_default();
    stdout.write_all(hashes::h_output(&password, &user, &domain, format).as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// What the `Password: ` prompt of `-H` and `-M` settled on.
enum PasswordAnswer {
    /// A non-empty answer.
    Typed(Password),
    /// No (or an empty) answer, and `-p`/`Password` gave one.
    Earlier(Password),
    /// An empty answer and no earlier password.
    Empty,
    /// End of input and no earlier password.
    None,
}

/// CNTLM's prompt for `-H` and `-M`: `Password: ` on stdout, the answer read, then `\n`. The
/// answer wins over `-p`, which wins over `Password`; an empty answer keeps the earlier value.
fn ask_password(settings: &Settings) -> anyhow::Result<PasswordAnswer> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(b"Password: ")?;
    stdout.flush()?;
    let answer = read_password_answer()?;
    // CNTLM prints "\n" after the answer. When both ends are the terminal, rpassword's
    // no-echo mode already echoed the Enter (ECHONL), so a second one would leave a gap.
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    Ok(match (answer, settings.password.clone()) {
        (Some(answer), _) if !answer.is_empty() => PasswordAnswer::Typed(answer),
        (_, Some(earlier)) => PasswordAnswer::Earlier(earlier),
        (Some(_), None) => PasswordAnswer::Empty,
        (None, None) => PasswordAnswer::None,
    })
}

/// `-M`: prompts like CNTLM, then runs the detection on a small runtime. Exit 0 when a
/// profile worked or the parent needs none, 1 otherwise (CNTLM exits 0 in every case, so
/// scripts could not tell; a documented difference).
fn magic(url: &str, mut settings: Settings) -> anyhow::Result<ExitCode> {
    match ask_password(&settings)? {
        PasswordAnswer::Typed(p) | PasswordAnswer::Earlier(p) => settings.password = Some(p),
        PasswordAnswer::Empty | PasswordAnswer::None => {}
    }
    if !url.contains("://") {
        // After the prompt, as CNTLM does.
        eprintln!("Invalid URL ({url})");
        return Ok(ExitCode::FAILURE);
    }
    let config = settings.resolve();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut stdout = std::io::stdout().lock();
    let outcome = runtime.block_on(cntlm::magic::detect(&config, url, &mut stdout))?;
    Ok(if outcome.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `-H` answer: from the terminal without echo, or one line of stdin when it is not a
/// terminal (`\n` or `\r\n` stripped). `None` at end of input.
fn read_password_answer() -> anyhow::Result<Option<Password>> {
    if std::io::stdin().is_terminal() {
        let text = rpassword::read_password().context("cannot read the password")?;
        return Ok(Some(Password::new(text)));
    }
    let mut line = zeroize::Zeroizing::new(Vec::new());
    let read = std::io::stdin()
        .lock()
        .read_until(b'\n', &mut line)
        .context("cannot read the password from standard input")?;
    if read == 0 {
        return Ok(None);
    }
    let text = line
        .strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .unwrap_or(&line);
    let text = std::str::from_utf8(text).context("the password is not valid UTF-8")?;
    Ok(Some(Password::new(text)))
}

/// `-I`: prompt on the terminal without echo.
fn prompt_password() -> anyhow::Result<Password> {
    let text = rpassword::prompt_password("Password: ").context("cannot read the password")?;
    if text.is_empty() {
        bail!("an empty password is refused");
    }
    Ok(Password::new(text))
}

fn run_proxy(
    args: &Args,
    source: &ConfigSource,
    mut settings: Settings,
    mut report: Report,
) -> anyhow::Result<ExitCode> {
    // -I is ignored with -B, as in CNTLM: the clients bring the credentials.
    let prompted = if args.interactive && !args.ntlm_to_basic {
        let password = prompt_password()?;
        settings.password = Some(password.clone());
        Some(password)
    } else {
        None
    };
    let config = settings.resolve();
    report.extend(check_credentials(&config));
    if !report.is_usable() {
        for err in &report.errors {
            eprintln!("cntlm: {err}");
        }
        return Ok(ExitCode::FAILURE);
    }
    let reload = ReloadSource::new(args, source, prompted);
    service::run(args, config, &report, reload)
}
