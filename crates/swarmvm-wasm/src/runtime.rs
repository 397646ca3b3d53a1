//! Running modules: wasmi with fuel metering, bounded memory and call depth, the ABI's
//! imports and nothing else; one fresh instance per action, so actions never see each
//! other's memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use swarmvm_primitives::Hash32;
use swarmvm_vm::wasm::{MAX_KEY_LEN, MAX_VALUE_LEN, WasmHost};
use swarmvm_vm::{ActionError, Block, ModuleRunner};
use wasmi::{
    Caller, CompilationMode, Config, Engine, Linker, Memory, Module, Store, StoreLimits,
    StoreLimitsBuilder, TrapCode, TypedResumableCall, Val,
};

use crate::check::{MAX_PAGES, check_module};
use crate::error::ModuleError;

/// The deepest call stack a module may build.
pub const MAX_CALL_DEPTH: usize = 512;
/// Fuel every import call costs, besides what the module's instructions cost.
pub const IMPORT_FUEL: u64 = 100;
/// The most key and value bytes one action may write.
pub const MAX_WRITTEN: usize = 1024 * 1024;
/// The most bytes of a `fail` message kept in a receipt.
pub const MAX_MESSAGE: usize = 256;

/// What a run leaves behind besides its writes: the fuel it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Fuel used, import costs included.
    pub fuel: u64,
}

/// A compiled module.
#[derive(Debug)]
struct Loaded {
    module: Module,
}

/// The per-run data the imports see.
struct Data {
    input: Vec<u8>,
    caller: Vec<u8>,
    block: Block,
    memory: Option<Memory>,
    limits: StoreLimits,
    /// This action's writes (`None`: removed), applied to the host when it succeeds.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Values read from the host during this run.
    reads: HashMap<Vec<u8>, Option<Vec<u8>>>,
    written: usize,
}

/// Why an import stopped the module: a value to read from the state (the runner reads it
/// and resumes), or `fail`.
#[derive(Debug)]
enum Exit {
    Get { key: Vec<u8>, ptr: u32, cap: u32 },
    Fail(String),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Get { .. } => f.write_str("get"),
            Self::Fail(m) => write!(f, "fail: {m}"),
        }
    }
}

impl wasmi::errors::HostError for Exit {}

/// Loads modules (checked, compiled once, kept by hash) and runs them for the VM.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Data>,
    modules: RwLock<HashMap<Hash32, Arc<Loaded>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.modules.read().map_or(0, |m| m.len());
        f.debug_struct("Runtime").field("modules", &n).finish_non_exhaustive()
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

/// The engine's configuration: the accepted feature set, fuel, eager compilation (so a
/// module is compiled whole when it is loaded, never lazily during a run), the call depth.
fn config(metered: bool) -> Config {
    let mut c = Config::default();
    c.consume_fuel(metered)
        .compilation_mode(CompilationMode::Eager)
        .wasm_mutable_global(true)
        .wasm_sign_extension(true)
        .wasm_saturating_float_to_int(false)
        .wasm_multi_value(false)
        .wasm_multi_memory(false)
        .wasm_bulk_memory(false)
        .wasm_reference_types(false)
        .wasm_tail_call(false)
        .wasm_extended_const(false)
        .wasm_custom_page_sizes(false)
        .wasm_memory64(false)
        .wasm_wide_arithmetic(false)
        .floats(false)
        .set_max_recursion_depth(MAX_CALL_DEPTH);
    c
}

impl Runtime {
    /// A runtime with no modules.
    pub fn new() -> Self {
        Self::with_metering(true)
    }

    /// A runtime whose runs consume no fuel: only for measuring what metering costs
    /// (`cargo bench -p swarmvm-wasm`); a peer always meters.
    pub fn unmetered() -> Self {
        Self::with_metering(false)
    }

    fn with_metering(metered: bool) -> Self {
        let engine = Engine::new(&config(metered));
        let linker = linker(&engine);
        Self { engine, linker, modules: RwLock::new(HashMap::new()) }
    }

    /// Checks `bytes` against the ABI, compiles them and keeps the module under its hash
    /// (again only if new). Returns the hash.
    pub fn load(&self, bytes: &[u8]) -> Result<Hash32, ModuleError> {
        let info = check_module(bytes)?;
        if self.has_module(&info.hash) {
            return Ok(info.hash);
        }
        let module =
            Module::new(&self.engine, bytes).map_err(|e| ModuleError::Compile(e.to_string()))?;
        let mut modules = self.modules.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        modules.insert(info.hash, Arc::new(Loaded { module }));
        Ok(info.hash)
    }

    /// True when the module is loaded.
    pub fn has_module(&self, hash: &Hash32) -> bool {
        self.modules.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(hash)
    }

    /// Runs `module` for one action (see [`ModuleRunner::run`]) and reports the fuel used.
    pub fn run_action(
        &self,
        module: &Hash32,
        fuel: u64,
        host: &mut dyn WasmHost,
    ) -> Result<Usage, ActionError> {
        let loaded = self
            .modules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(module)
            .cloned()
            .ok_or_else(|| ActionError::ModuleMissing(module.to_hex()))?;
        let data = Data {
            input: host.input().to_vec(),
            caller: host.caller().as_bytes().to_vec(),
            block: host.block(),
            memory: None,
            limits: StoreLimitsBuilder::new()
                .memory_size(MAX_PAGES as usize * 65_536)
                .trap_on_grow_failure(false)
                .build(),
            writes: BTreeMap::new(),
            reads: HashMap::new(),
            written: 0,
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|d| &mut d.limits);
        let metered = store.set_fuel(fuel).is_ok();
        let instance = self
            .linker
            .instantiate_and_start(&mut store, &loaded.module)
            .map_err(|e| trap(&e, fuel))?;
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or_else(|| ActionError::Trap("no memory export".into()))?;
        store.data_mut().memory = Some(memory);
        let run = instance
            .get_typed_func::<(), i32>(&store, "run")
            .map_err(|e| ActionError::Trap(shorten(&e.to_string())))?;
        let mut call = run.call_resumable(&mut store, ()).map_err(|e| trap(&e, fuel))?;
        loop {
            match call {
                TypedResumableCall::Finished(0) => break,
                TypedResumableCall::Finished(n) => return Err(ActionError::ModuleReturned(n)),
                TypedResumableCall::OutOfFuel(_) => return Err(ActionError::OutOfFuel(fuel)),
                TypedResumableCall::HostTrap(pending) => {
                    let answer = match pending.host_error().downcast_ref::<Exit>() {
                        Some(Exit::Get { key, ptr, cap }) => {
                            let (key, ptr, cap) = (key.clone(), *ptr, *cap);
                            let value = host.get(&key)?;
                            let answer = answer_get(&mut store, memory, value.as_deref(), ptr, cap)
                                .map_err(|e| trap(&e, fuel))?;
                            store.data_mut().reads.insert(key, value);
                            answer
                        }
                        Some(Exit::Fail(message)) => {
                            return Err(ActionError::ModuleFailed(message.clone()));
                        }
                        None => {
                            return Err(ActionError::Trap(shorten(
                                &pending.host_error().to_string(),
                            )));
                        }
                    };
                    call = pending
                        .resume(&mut store, &[Val::I32(answer)])
                        .map_err(|e| trap(&e, fuel))?;
                }
            }
        }
        let used = if metered { fuel - store.get_fuel().unwrap_or(0) } else { 0 };
        for (key, value) in std::mem::take(&mut store.data_mut().writes) {
            match value {
                Some(v) => host.set(&key, &v),
                None => host.remove(&key),
            }
        }
        Ok(Usage { fuel: used })
    }
}

impl ModuleRunner for Runtime {
    fn has(&self, module: &Hash32) -> bool {
        self.has_module(module)
    }

    fn run(&self, module: &Hash32, fuel: u64, host: &mut dyn WasmHost) -> Result<u64, ActionError> {
        self.run_action(module, fuel, host).map(|u| u.fuel)
    }
}

fn shorten(text: &str) -> String {
    swarmvm_primitives::text::escape(text, MAX_MESSAGE)
}

/// An engine error as the action's error: out of fuel, or a trap with its reason.
fn trap(e: &wasmi::Error, fuel: u64) -> ActionError {
    if e.as_trap_code() == Some(TrapCode::OutOfFuel) {
        return ActionError::OutOfFuel(fuel);
    }
    ActionError::Trap(shorten(&e.to_string()))
}

/// Charges `n` fuel (saturating at none left: the module then stops out of fuel).
fn charge(caller: &mut Caller<'_, Data>, n: u64) -> Result<(), wasmi::Error> {
    let Ok(left) = caller.get_fuel() else { return Ok(()) };
    if left < n {
        let _ = caller.set_fuel(0);
        return Err(wasmi::Error::from(TrapCode::OutOfFuel));
    }
    caller.set_fuel(left - n)
}

fn bad(what: &str) -> wasmi::Error {
    wasmi::Error::new(what.to_owned())
}

/// The bytes of the module's memory at `ptr..ptr + len`, or a trap.
fn read(
    caller: &Caller<'_, Data>,
    memory: Memory,
    ptr: i32,
    len: i32,
    what: &str,
) -> Result<Vec<u8>, wasmi::Error> {
    let (ptr, len) = (u32::try_from(ptr), usize::try_from(len));
    let (Ok(ptr), Ok(len)) = (ptr, len) else {
        return Err(bad(&format!("{what}: negative pointer or length")));
    };
    let mut buf = vec![0u8; len];
    memory
        .read(caller, ptr as usize, &mut buf)
        .map_err(|_| bad(&format!("{what}: outside the module's memory")))?;
    Ok(buf)
}

/// Writes `bytes` at `ptr` in the module's memory, or traps.
fn write(
    caller: &mut Caller<'_, Data>,
    memory: Memory,
    ptr: i32,
    bytes: &[u8],
    what: &str,
) -> Result<(), wasmi::Error> {
    let ptr = u32::try_from(ptr).map_err(|_| bad(&format!("{what}: negative pointer")))?;
    memory
        .write(caller, ptr as usize, bytes)
        .map_err(|_| bad(&format!("{what}: outside the module's memory")))
}

fn memory_of(caller: &Caller<'_, Data>) -> Result<Memory, wasmi::Error> {
    caller.data().memory.ok_or_else(|| bad("no memory"))
}

fn key_of(
    caller: &Caller<'_, Data>,
    memory: Memory,
    ptr: i32,
    len: i32,
    what: &str,
) -> Result<Vec<u8>, wasmi::Error> {
    if !(1..=MAX_KEY_LEN as i32).contains(&len) {
        return Err(bad(&format!("{what}: a key of {len} bytes (1 to {MAX_KEY_LEN})")));
    }
    read(caller, memory, ptr, len, what)
}

/// `get`'s answer from a value known here: copies it when it fits in `cap`; the value's
/// length, or -1.
fn answer_local(
    caller: &mut Caller<'_, Data>,
    memory: Memory,
    value: Option<&[u8]>,
    ptr: i32,
    cap: i32,
) -> Result<i32, wasmi::Error> {
    let Some(value) = value else { return Ok(-1) };
    charge(caller, value.len() as u64)?;
    if value.len() <= cap as usize {
        write(caller, memory, ptr, value, "get")?;
    }
    Ok(value.len() as i32)
}

/// `get`'s answer after the runner read the state, written into the store.
fn answer_get(
    store: &mut Store<Data>,
    memory: Memory,
    value: Option<&[u8]>,
    ptr: u32,
    cap: u32,
) -> Result<i32, wasmi::Error> {
    let Some(value) = value else { return Ok(-1) };
    if let Ok(left) = store.get_fuel() {
        if left < value.len() as u64 {
            let _ = store.set_fuel(0);
            return Err(wasmi::Error::from(TrapCode::OutOfFuel));
        }
        store.set_fuel(left - value.len() as u64)?;
    }
    if value.len() <= cap as usize {
        memory
            .write(&mut *store, ptr as usize, value)
            .map_err(|_| bad("get: outside the module's memory"))?;
    }
    Ok(value.len() as i32)
}

/// The ABI's imports (`docs/wasm.md`).
fn linker(engine: &Engine) -> Linker<Data> {
    let mut l = Linker::<Data>::new(engine);
    let wrap = "the ABI's imports are defined once, with distinct names";
    l.func_wrap("swarmvm", "input_len", |mut c: Caller<'_, Data>| -> Result<i32, wasmi::Error> {
        charge(&mut c, IMPORT_FUEL)?;
        Ok(c.data().input.len() as i32)
    })
    .expect(wrap);
    l.func_wrap(
        "swarmvm",
        "input_read",
        |mut c: Caller<'_, Data>, ptr: i32| -> Result<(), wasmi::Error> {
            let n = c.data().input.len() as u64;
            charge(&mut c, IMPORT_FUEL + n)?;
            let memory = memory_of(&c)?;
            let input = std::mem::take(&mut c.data_mut().input);
            let result = write(&mut c, memory, ptr, &input, "input_read");
            c.data_mut().input = input;
            result
        },
    )
    .expect(wrap);
    l.func_wrap(
        "swarmvm",
        "caller",
        |mut c: Caller<'_, Data>, ptr: i32| -> Result<(), wasmi::Error> {
            charge(&mut c, IMPORT_FUEL + 43)?;
            let memory = memory_of(&c)?;
            let id = c.data().caller.clone();
            write(&mut c, memory, ptr, &id, "caller")
        },
    )
    .expect(wrap);
    l.func_wrap("swarmvm", "seq", |mut c: Caller<'_, Data>| -> Result<i64, wasmi::Error> {
        charge(&mut c, IMPORT_FUEL)?;
        Ok(c.data().block.seq as i64)
    })
    .expect(wrap);
    l.func_wrap("swarmvm", "time", |mut c: Caller<'_, Data>| -> Result<i64, wasmi::Error> {
        charge(&mut c, IMPORT_FUEL)?;
        Ok(c.data().block.time as i64)
    })
    .expect(wrap);
    l.func_wrap(
        "swarmvm",
        "get",
        |mut c: Caller<'_, Data>,
         kptr: i32,
         klen: i32,
         vptr: i32,
         vcap: i32|
         -> Result<i32, wasmi::Error> {
            charge(&mut c, IMPORT_FUEL)?;
            let memory = memory_of(&c)?;
            let key = key_of(&c, memory, kptr, klen, "get")?;
            charge(&mut c, key.len() as u64)?;
            // The value's room must be inside memory, whether or not it is written.
            let (Ok(ptr), Ok(cap)) = (u32::try_from(vptr), u32::try_from(vcap)) else {
                return Err(bad("get: negative pointer or capacity"));
            };
            if u64::from(ptr) + u64::from(cap) > memory.data_size(&c) as u64 {
                return Err(bad("get: the value's room is outside the module's memory"));
            }
            let known = match c.data().writes.get(&key) {
                Some(v) => Some(v.clone()),
                None => c.data().reads.get(&key).cloned(),
            };
            match known {
                Some(value) => answer_local(&mut c, memory, value.as_deref(), vptr, vcap),
                None => Err(wasmi::Error::host(Exit::Get { key, ptr, cap })),
            }
        },
    )
    .expect(wrap);
    l.func_wrap(
        "swarmvm",
        "set",
        |mut c: Caller<'_, Data>,
         kptr: i32,
         klen: i32,
         vptr: i32,
         vlen: i32|
         -> Result<(), wasmi::Error> {
            charge(&mut c, IMPORT_FUEL)?;
            let memory = memory_of(&c)?;
            let key = key_of(&c, memory, kptr, klen, "set")?;
            if !(0..=MAX_VALUE_LEN as i32).contains(&vlen) {
                return Err(bad(&format!(
                    "set: a value of {vlen} bytes (at most {MAX_VALUE_LEN})"
                )));
            }
            let value = read(&c, memory, vptr, vlen, "set")?;
            charge(&mut c, (key.len() + value.len()) as u64)?;
            let data = c.data_mut();
            data.written += key.len() + value.len();
            if data.written > MAX_WRITTEN {
                return Err(bad(&format!(
                    "set: more than {MAX_WRITTEN} bytes written by one action"
                )));
            }
            data.writes.insert(key, Some(value));
            Ok(())
        },
    )
    .expect(wrap);
    l.func_wrap(
        "swarmvm",
        "remove",
        |mut c: Caller<'_, Data>, kptr: i32, klen: i32| -> Result<(), wasmi::Error> {
            charge(&mut c, IMPORT_FUEL)?;
            let memory = memory_of(&c)?;
            let key = key_of(&c, memory, kptr, klen, "remove")?;
            charge(&mut c, key.len() as u64)?;
            c.data_mut().writes.insert(key, None);
            Ok(())
        },
    )
    .expect(wrap);
    l.func_wrap(
        "swarmvm",
        "fail",
        |mut c: Caller<'_, Data>, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
            charge(&mut c, IMPORT_FUEL)?;
            let memory = memory_of(&c)?;
            if len < 0 {
                return Err(bad("fail: negative length"));
            }
            // Only the message's first bytes are kept; the rest must still be in memory.
            let kept = read(&c, memory, ptr, len.min(MAX_MESSAGE as i32), "fail")?;
            let (Ok(start), Ok(n)) = (u32::try_from(ptr), u32::try_from(len)) else {
                return Err(bad("fail: negative pointer"));
            };
            if u64::from(start) + u64::from(n) > memory.data_size(&c) as u64 {
                return Err(bad("fail: the message is outside the module's memory"));
            }
            let text = String::from_utf8_lossy(&kept);
            Err(wasmi::Error::host(Exit::Fail(shorten(&text))))
        },
    )
    .expect(wrap);
    l
}
