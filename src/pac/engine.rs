//! The PAC engine: one OS thread owning a QuickJS runtime, fed by a channel.
//!
//! QuickJS runtimes are single-threaded, and a PAC call may block on DNS, so the script runs on
//! a dedicated thread rather than a tokio worker. The runtime has a memory limit
//! (`set_memory_limit`), a JavaScript stack limit, and an interrupt handler that stops any
//! evaluation past its deadline; QuickJS's interrupt exception cannot be caught by the script.
//! After a timeout or an out-of-memory error the runtime is rebuilt from the script, so one bad
//! call cannot leave half-built state behind for the next.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use rquickjs::{Coerced, Context, Ctx, FromJs, Function, Runtime, Value};
use tokio::sync::oneshot;

use super::cache::{Outcome, ResultCache, origin_key};
use super::helpers::{self, PRELUDE_JS};
use super::{PacError, PacNetwork, PacOptions, PacProxy, TimeZoneChoice, parse_pac_result};

/// Native stack of the engine thread: QuickJS recursion runs on it.
const THREAD_STACK: usize = 8 * 1024 * 1024;
/// JavaScript stack limit, well inside `THREAD_STACK`, so deep recursion is a catchable error.
const JS_STACK_LIMIT: usize = 1024 * 1024;
/// Longest `alert()` text logged.
const MAX_ALERT_LEN: usize = 1024;

/// A running PAC script. Cheap to share behind an `Arc`; calls from many tasks queue on the
/// engine thread, and the thread ends when the engine is dropped.
#[derive(Debug)]
pub struct PacEngine {
    /// Requests for the engine thread.
    jobs: mpsc::Sender<Job>,
    /// Outcomes by origin, filled by the engine thread.
    cache: Arc<ResultCache>,
}

/// One `FindProxyForURL` call for the engine thread.
struct Job {
    /// The cache key (origin) of `url`.
    key: String,
    url: String,
    host: String,
    reply: oneshot::Sender<Outcome>,
}

impl PacEngine {
    /// Starts the engine thread and loads `script` (the prelude, then the PAC's top-level
    /// code, within the time limit). Blocks the caller until the script is loaded, which is
    /// sub-millisecond for real PACs and at most `options.time_limit` for hostile ones.
    ///
    /// Errors: [`PacError::Load`] for syntax errors or a throwing top level,
    /// [`PacError::NoEntryPoint`], [`PacError::Timeout`], [`PacError::MemoryLimit`].
    pub fn new(script: String, options: PacOptions) -> Result<PacEngine, PacError> {
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), PacError>>(1);
        let cache = Arc::new(ResultCache::new(options.cache_ttl));
        let shared = Arc::clone(&cache);
        std::thread::Builder::new()
            .name("cntlm-pac".into())
            .stack_size(THREAD_STACK)
            .spawn(move || serve_jobs(&script, &options, &shared, &job_rx, ready_tx))
            .map_err(|_| PacError::EngineGone)?;
        ready_rx.recv().map_err(|_| PacError::EngineGone)??;
        Ok(PacEngine {
            jobs: job_tx,
            cache,
        })
    }

    /// Evaluates `FindProxyForURL(url, host)` (or `FindProxyForURLEx` when the script defines
    /// it) and parses the answer. `url` is the full URL (for CONNECT, `https://host:port/`);
    /// `host` is its host without port or brackets. Outcomes, errors included, are cached per
    /// origin for the configured TTL. Calls are evaluated one at a time on the engine thread.
    pub async fn find_proxy(&self, url: &str, host: &str) -> Result<Vec<PacProxy>, PacError> {
        let key = origin_key(url, host);
        if let Some(hit) = self.cache.get(&key, Instant::now()) {
            return hit;
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            key,
            url: url.to_owned(),
            host: host.to_owned(),
            reply,
        };
        self.jobs.send(job).map_err(|_| PacError::EngineGone)?;
        answer.await.map_err(|_| PacError::EngineGone)?
    }

    /// Forgets every cached outcome (call on a network change).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }
}

/// The engine thread: loads the script, reports readiness, then answers jobs until every
/// [`PacEngine`] handle is gone.
fn serve_jobs(
    script: &str,
    options: &PacOptions,
    cache: &ResultCache,
    jobs: &mpsc::Receiver<Job>,
    ready: mpsc::SyncSender<Result<(), PacError>>,
) {
    let mut sandbox = match Sandbox::load(script, options) {
        Ok(sandbox) => sandbox,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    while let Ok(job) = jobs.recv() {
        // Jobs for one origin queue up while the first is evaluated (a browser opens several
        // connections at once); answer the later ones from the cache, so a looping PAC costs
        // one time limit per origin, not one per queued request.
        if let Some(hit) = cache.get(&job.key, Instant::now()) {
            let _ = job.reply.send(hit);
            continue;
        }
        // A panic in an injected PacNetwork or PacClock must not kill the engine: it fails
        // this call, and the sandbox is rebuilt as after a timeout.
        let evaluated =
            std::panic::catch_unwind(AssertUnwindSafe(|| sandbox.find_proxy(&job.url, &job.host)));
        let (outcome, reload) = match evaluated {
            Ok(outcome @ Err(PacError::Timeout { .. } | PacError::MemoryLimit { .. })) => {
                (outcome, true)
            }
            Ok(outcome) => (outcome, false),
            Err(_) => {
                let message = "the PAC engine panicked".to_owned();
                (Err(PacError::Script { message }), true)
            }
        };
        if let (true, Err(e)) = (reload, &outcome) {
            tracing::warn!(host = %job.host, "PAC evaluation stopped: {e}; reloading the script");
            match Sandbox::load(script, options) {
                Ok(fresh) => sandbox = fresh,
                Err(e) => tracing::warn!("PAC script did not reload: {e}"),
            }
        }
        cache.put(job.key, outcome.clone(), Instant::now());
        // The caller may have gone away; its answer is simply dropped.
        let _ = job.reply.send(outcome);
    }
}

/// Which function the script answers through.
#[derive(Debug, Clone, Copy)]
enum EntryPoint {
    /// Netscape's `FindProxyForURL`.
    Standard,
    /// Microsoft's `FindProxyForURLEx`, preferred when defined (as Windows does).
    Ex,
}

impl EntryPoint {
    fn name(self) -> &'static str {
        match self {
            EntryPoint::Standard => "FindProxyForURL",
            EntryPoint::Ex => "FindProxyForURLEx",
        }
    }
}

/// A QuickJS runtime with the prelude and the PAC loaded. Lives on the engine thread only.
struct Sandbox {
    /// The global object holding the PAC's functions (declared before `runtime`: dropped first).
    context: Context,
    /// The runtime that owns the heap and the limits.
    _runtime: Runtime,
    /// When the current evaluation must stop; `None` between calls.
    deadline: Rc<Cell<Option<Instant>>>,
    /// Set by the interrupt handler when it stopped an evaluation.
    interrupted: Rc<Cell<bool>>,
    /// DNS answers within one evaluation (PACs often resolve the same host in every branch).
    dns_memo: Rc<RefCell<HashMap<String, Vec<IpAddr>>>>,
    /// The function to call.
    entry: EntryPoint,
    /// Limits (also quoted in errors), network and clock.
    options: PacOptions,
}

impl Sandbox {
    fn load(script: &str, options: &PacOptions) -> Result<Sandbox, PacError> {
        let runtime = Runtime::new().map_err(|_| PacError::MemoryLimit {
            limit: options.memory_limit,
        })?;
        runtime.set_memory_limit(options.memory_limit);
        runtime.set_max_stack_size(JS_STACK_LIMIT);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let interrupted = Rc::new(Cell::new(false));
        {
            let deadline = Rc::clone(&deadline);
            let interrupted = Rc::clone(&interrupted);
            runtime.set_interrupt_handler(Some(Box::new(move || match deadline.get() {
                Some(at) if Instant::now() >= at => {
                    interrupted.set(true);
                    true
                }
                _ => false,
            })));
        }
        let context = Context::full(&runtime).map_err(|_| PacError::MemoryLimit {
            limit: options.memory_limit,
        })?;
        let mut sandbox = Sandbox {
            context,
            _runtime: runtime,
            deadline,
            interrupted,
            dns_memo: Rc::new(RefCell::new(HashMap::new())),
            entry: EntryPoint::Standard,
            options: options.clone(),
        };
        sandbox.start_clock();
        let loaded = sandbox.context.with(|ctx| -> Result<EntryPoint, PacError> {
            sandbox
                .register_natives(&ctx)
                .map_err(|e| sandbox.classify(&ctx, e, Phase::Load))?;
            ctx.eval::<(), _>(PRELUDE_JS)
                .map_err(|e| sandbox.classify(&ctx, e, Phase::Load))?;
            ctx.eval::<(), _>(script)
                .map_err(|e| sandbox.classify(&ctx, e, Phase::Load))?;
            let globals = ctx.globals();
            let is_function = |name: &str| {
                globals
                    .get::<_, Value>(name)
                    .map(|v| v.is_function())
                    .unwrap_or(false)
            };
            if is_function(EntryPoint::Ex.name()) {
                Ok(EntryPoint::Ex)
            } else if is_function(EntryPoint::Standard.name()) {
                Ok(EntryPoint::Standard)
            } else {
                Err(PacError::NoEntryPoint)
            }
        });
        sandbox.stop_clock();
        sandbox.entry = loaded?;
        Ok(sandbox)
    }

    /// Arms the interrupt deadline and forgets the previous call's DNS answers.
    fn start_clock(&self) {
        self.interrupted.set(false);
        self.dns_memo.borrow_mut().clear();
        self.deadline
            .set(Some(Instant::now() + self.options.time_limit));
    }

    fn stop_clock(&self) {
        self.deadline.set(None);
    }

    fn find_proxy(&mut self, url: &str, host: &str) -> Outcome {
        self.start_clock();
        let outcome = self.context.with(|ctx| {
            let function: Function = ctx
                .globals()
                .get(self.entry.name())
                .map_err(|e| self.classify(&ctx, e, Phase::Call))?;
            let value: Value = function
                .call((url, host))
                .map_err(|e| self.classify(&ctx, e, Phase::Call))?;
            let Some(text) = value.as_string() else {
                return Err(PacError::NotAString {
                    type_name: value.type_of().as_str().to_owned(),
                });
            };
            let text = text
                .to_string()
                .map_err(|e| self.classify(&ctx, e, Phase::Call))?;
            Ok(parse_pac_result(&text)?)
        });
        self.stop_clock();
        outcome
    }

    /// Turns a QuickJS failure into a [`PacError`], consuming the pending exception.
    fn classify(&self, ctx: &Ctx<'_>, error: rquickjs::Error, phase: Phase) -> PacError {
        let message = match error {
            rquickjs::Error::Exception => describe_exception(ctx, ctx.catch()),
            rquickjs::Error::Allocation => "out of memory".to_owned(),
            other => other.to_string(),
        };
        if self.interrupted.get() {
            return PacError::Timeout {
                limit: self.options.time_limit,
            };
        }
        if message.contains("out of memory") {
            return PacError::MemoryLimit {
                limit: self.options.memory_limit,
            };
        }
        match phase {
            Phase::Load => PacError::Load { message },
            Phase::Call => PacError::Script { message },
        }
    }

    /// Installs the `__cntlm_*` natives the prelude builds on.
    fn register_natives(&self, ctx: &Ctx<'_>) -> rquickjs::Result<()> {
        let globals = ctx.globals();
        let network = Arc::clone(&self.options.network);
        let memo = Rc::clone(&self.dns_memo);
        let deadline = Rc::clone(&self.deadline);
        globals.set(
            "__cntlm_resolve",
            Function::new(ctx.clone(), move |host: String| {
                helpers::join_ips(&resolve(network.as_ref(), &memo, &deadline, &host))
            })?,
        )?;
        let network = Arc::clone(&self.options.network);
        globals.set(
            "__cntlm_my_ips",
            Function::new(ctx.clone(), move || {
                helpers::join_ips(&network.my_ip_addresses())
            })?,
        )?;
        let clock = Arc::clone(&self.options.clock);
        globals.set(
            "__cntlm_now",
            Function::new(ctx.clone(), move |gmt: bool| {
                let zone = if gmt {
                    TimeZoneChoice::Gmt
                } else {
                    TimeZoneChoice::Local
                };
                let t = clock.now(zone);
                vec![
                    t.year,
                    i32::from(t.month),
                    i32::from(t.day),
                    i32::from(t.weekday),
                    i32::from(t.hour),
                    i32::from(t.minute),
                    i32::from(t.second),
                ]
            })?,
        )?;
        globals.set(
            "__cntlm_in_net",
            Function::new(ctx.clone(), |ip: String, pattern: String, mask: String| {
                helpers::in_net(&ip, &pattern, &mask)
            })?,
        )?;
        globals.set(
            "__cntlm_in_net_ex",
            Function::new(ctx.clone(), |ips: String, prefix: String| {
                helpers::in_net_ex(&ips, &prefix)
            })?,
        )?;
        globals.set(
            "__cntlm_sort",
            Function::new(ctx.clone(), |list: String| helpers::sort_ip_list(&list))?,
        )?;
        globals.set(
            "__cntlm_glob",
            Function::new(ctx.clone(), |text: String, pattern: String| {
                helpers::glob_match(&text, &pattern)
            })?,
        )?;
        globals.set(
            "__cntlm_alert",
            Function::new(ctx.clone(), |message: String| {
                let shown: String = message.chars().take(MAX_ALERT_LEN).collect();
                tracing::info!(target: "cntlm::pac", "PAC alert: {shown}");
            })?,
        )?;
        Ok(())
    }
}

/// Where a failure happened, which decides its [`PacError`] variant.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Loading the prelude or the script.
    Load,
    /// Calling the entry point.
    Call,
}

/// Resolves `host` for the PAC: literals directly, names through `network` once per call, and
/// not at all once the call's deadline has passed (the interrupt will end it anyway).
fn resolve(
    network: &dyn PacNetwork,
    memo: &RefCell<HashMap<String, Vec<IpAddr>>>,
    deadline: &Cell<Option<Instant>>,
    host: &str,
) -> Vec<IpAddr> {
    if let Some(ip) = helpers::parse_ip(host) {
        return vec![ip];
    }
    let name = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Vec::new();
    }
    if let Some(known) = memo.borrow().get(&name) {
        return known.clone();
    }
    if deadline.get().is_some_and(|at| Instant::now() >= at) {
        return Vec::new();
    }
    let found = network.resolve(&name);
    memo.borrow_mut().insert(name, found.clone());
    found
}

/// `Name: message` of a thrown value, or its string form when it is not an Error.
fn describe_exception<'js>(ctx: &Ctx<'js>, thrown: Value<'js>) -> String {
    if let Some(exception) = thrown.as_exception() {
        let name: Option<String> = exception.get("name").ok();
        let message = exception.message().unwrap_or_default();
        return match name {
            Some(name) => format!("{name}: {message}"),
            None => message,
        };
    }
    Coerced::<String>::from_js(ctx, thrown)
        .map(|c| c.0)
        .unwrap_or_else(|_| "(an unprintable value)".to_owned())
}
