//! Running modules: wasmi with fuel metering, bounded memory and call depth, the ABI's
//! imports and nothing else.
//!
//! A contract opens one session per module it calls. The session instantiates the module
//! once and, before every further action, puts the instance back as it was when
//! instantiated: its memory's bytes made equal to a pristine image again and every global set
//! to its initial value (the module is compiled with its globals exported under reserved names
//! to make that possible). An action that grew the memory gets a fresh instance instead. So no
//! action sees what another left in memory or globals, at the cost of a pass over the module's
//! memory rather than a new instance: chunks that are zeros in the image are only read, and
//! written only when the action left something there ([`Pristine::restore`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use swarmvm_primitives::{Hash32, Rules};
use swarmvm_vm::wasm::{
    Budget, ENTRY_COST, MAX_KEY_LEN, MAX_VALUE_LEN, Used, V1_MAX_WRITTEN, WasmState, WriteLimit,
};
use swarmvm_vm::{ActionError, Block, Call, ModuleRunner, ModuleSession};
use wasmi::{
    Caller, CompilationMode, Config, Engine, Global, Instance, Linker, Memory, Module, Store,
    StoreLimits, StoreLimitsBuilder, TrapCode, TypedFunc, Val,
};

use crate::check::{MAX_PAGES, MAX_TABLE_ELEMENTS, check_abi};
use crate::error::ModuleError;

/// The deepest call stack a module may build.
pub const MAX_CALL_DEPTH: usize = 512;
/// Fuel every import call costs, besides what the module's instructions cost; imports that
/// move bytes also cost one unit per byte.
pub const IMPORT_FUEL: u64 = 100;
/// The most key and value bytes one action may write under rules version 1 (version 2
/// counts removals and entries too: [`swarmvm_vm::wasm::ACTION_BUDGET`]).
pub const MAX_WRITTEN: usize = V1_MAX_WRITTEN as usize;
/// From rules version 2: fuel every instantiation of a module costs, besides its memory and
/// table.
pub const INSTANCE_FUEL: u64 = 10_000;
/// From rules version 2: fuel for each 64 KiB page of memory an instantiation sets up or a
/// reset restores.
pub const PAGE_FUEL: u64 = 1_024;
/// From rules version 2: fuel for each table element an instantiation sets up.
pub const TABLE_ELEMENT_FUEL: u64 = 1;
/// The size of a WebAssembly page.
const PAGE: u64 = 65_536;
/// The most bytes of a `fail` message kept in a receipt.
pub const MAX_MESSAGE: usize = 256;
/// The prefix of the export names under which a module's globals are exported for resets.
pub(crate) const GLOBAL_EXPORT: &str = "\u{1}swarmvm.global.";

/// A compiled module.
#[derive(Debug)]
struct Loaded {
    module: Module,
    /// How many globals it defines (all exported under [`GLOBAL_EXPORT`] names), or `None`
    /// when that could not be done (then every action gets a fresh instance).
    globals: Option<u32>,
    /// The elements of its tables when instantiated.
    table_elements: u64,
    /// Its memory as instantiated: the same for every instance, so taken once.
    pristine: std::sync::OnceLock<Arc<Pristine>>,
}

/// The bytes of a chunk [`Pristine`] checks or restores at once.
const CHUNK: usize = 1024;

/// A module's memory as instantiated, and which of its chunks hold only zeros.
#[derive(Debug)]
struct Pristine {
    bytes: Vec<u8>,
    zero: Vec<bool>,
}

impl Pristine {
    fn new(bytes: Vec<u8>) -> Self {
        let zero = bytes.chunks(CHUNK).map(is_zero).collect();
        Self { bytes, zero }
    }

    /// Makes `memory`, as long as the image, equal to it again. A chunk that is zeros in the
    /// image is only read unless the action left something there (most of a module's memory,
    /// usually); the others are copied.
    fn restore(&self, memory: &mut [u8]) {
        debug_assert_eq!(memory.len(), self.bytes.len());
        let chunks = memory.chunks_mut(CHUNK).zip(self.bytes.chunks(CHUNK));
        for ((now, then), &zero) in chunks.zip(&self.zero) {
            if !zero {
                now.copy_from_slice(then);
            } else if !is_zero(now) {
                now.fill(0);
            }
        }
    }
}

/// True when every byte is zero (without an early exit, so the loop vectorizes).
fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0, |acc, b| acc | b) == 0
}

/// What the imports of one session see.
struct Data<'h> {
    state: &'h dyn WasmState,
    action: String,
    input: Vec<u8>,
    caller: Vec<u8>,
    block: Block,
    memory: Option<Memory>,
    limits: StoreLimits,
    /// This action's writes (`None`: removed), made to the state when it succeeds.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// What it wrote, as its rules count it.
    written: Budget,
    /// What it may write.
    limit: WriteLimit,
    /// The rules it runs under: version 2 counts removals and entries.
    rules: Rules,
}

/// Why an import stopped the module.
#[derive(Debug)]
enum Exit {
    Fail(String),
    Storage(swarmvm_vm::StateError),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fail(m) => write!(f, "fail: {m}"),
            Self::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl wasmi::errors::HostError for Exit {}

/// Loads modules (checked, compiled once, kept by hash) and runs them for the VM.
pub struct Runtime {
    engine: Engine,
    metered: bool,
    modules: RwLock<HashMap<Hash32, Arc<Loaded>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.modules.read().len();
        f.debug_struct("Runtime").field("modules", &n).finish_non_exhaustive()
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

/// The engine's configuration: the accepted feature set, fuel, eager compilation (a module
/// is compiled whole when it is loaded, never lazily during a run), the call depth.
pub(crate) fn config(metered: bool) -> Config {
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
        Self {
            engine: Engine::new(&config(metered)),
            metered,
            modules: RwLock::new(HashMap::new()),
        }
    }

    /// Checks `bytes` against the ABI, compiles them and keeps the module under its hash
    /// (only once). Returns the hash.
    pub fn load(&self, bytes: &[u8]) -> Result<Hash32, ModuleError> {
        // The ABI's rules; compiling below is the check's other half (`check_module` does the
        // same with an engine of its own).
        let info = check_abi(bytes)?;
        if self.has_module(&info.hash) {
            return Ok(info.hash);
        }
        let (module, globals) = compile(&self.engine, bytes)?;
        let loaded = Loaded {
            module,
            globals,
            table_elements: info.table_elements,
            pristine: std::sync::OnceLock::new(),
        };
        self.modules.write().insert(info.hash, Arc::new(loaded));
        Ok(info.hash)
    }

    /// True when the module is loaded.
    pub fn has_module(&self, hash: &Hash32) -> bool {
        self.modules.read().contains_key(hash)
    }

    fn loaded(&self, hash: &Hash32) -> Result<Arc<Loaded>, ActionError> {
        self.modules
            .read()
            .get(hash)
            .cloned()
            .ok_or_else(|| ActionError::ModuleMissing(hash.to_hex()))
    }
}

impl ModuleRunner for Runtime {
    fn has(&self, module: &Hash32) -> bool {
        self.has_module(module)
    }

    fn session<'h>(
        &'h self,
        module: &Hash32,
        state: &'h dyn WasmState,
    ) -> Result<Box<dyn ModuleSession + 'h>, ActionError> {
        let loaded = self.loaded(module)?;
        Ok(Box::new(Session {
            engine: &self.engine,
            metered: self.metered,
            linker: linker(&self.engine),
            loaded,
            state,
            live: None,
        }))
    }
}

/// An instance ready for the next action, and how to put it back as it was.
struct Live<'h> {
    store: Store<Data<'h>>,
    memory: Memory,
    run: TypedFunc<(), i32>,
    pristine: Arc<Pristine>,
    globals: Vec<(Global, Val)>,
    /// False once an action ran: the next one resets first.
    fresh: bool,
}

/// One module, for the actions of one contract.
struct Session<'h> {
    engine: &'h Engine,
    metered: bool,
    linker: Linker<Data<'h>>,
    loaded: Arc<Loaded>,
    state: &'h dyn WasmState,
    live: Option<Live<'h>>,
}

impl<'h> Session<'h> {
    /// A new instance in a new store.
    fn instantiate(&self) -> Result<Live<'h>, ActionError> {
        let data = Data {
            state: self.state,
            action: String::new(),
            input: Vec::new(),
            caller: Vec::new(),
            block: Block::default(),
            memory: None,
            limits: StoreLimitsBuilder::new()
                .memory_size(MAX_PAGES as usize * 65_536)
                .trap_on_grow_failure(false)
                .build(),
            writes: BTreeMap::new(),
            written: Budget::default(),
            limit: WriteLimit::V1,
            rules: Rules::V1,
        };
        let mut store = Store::new(self.engine, data);
        store.limiter(|d| &mut d.limits);
        let instance: Instance = self
            .linker
            .instantiate_and_start(&mut store, &self.loaded.module)
            .map_err(|e| trap(&e, 0))?;
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or_else(|| ActionError::Trap("no memory export".into()))?;
        store.data_mut().memory = Some(memory);
        let run = instance
            .get_typed_func::<(), i32>(&store, "run")
            .map_err(|e| ActionError::Trap(shorten(&e.to_string())))?;
        let globals = match self.loaded.globals {
            Some(n) => (0..n)
                .filter_map(|i| instance.get_global(&store, &format!("{GLOBAL_EXPORT}{i}")))
                .filter(|g| g.ty(&store).mutability() == wasmi::Mutability::Var)
                .map(|g| (g, g.get(&store)))
                .collect(),
            None => Vec::new(),
        };
        let pristine = self
            .loaded
            .pristine
            .get_or_init(|| Arc::new(Pristine::new(memory.data(&store).to_vec())))
            .clone();
        Ok(Live { store, memory, run, pristine, globals, fresh: true })
    }

    /// The instance for the next action: the current one put back as it was, or a new one;
    /// and the fuel that cost under rules version 2 (an instantiation: [`INSTANCE_FUEL`], its
    /// memory's pages and its table; a reset: the pages restored).
    fn ready(&mut self) -> Result<(&mut Live<'h>, u64), ActionError> {
        let reusable = self.loaded.globals.is_some()
            && self.live.as_ref().is_some_and(|l| {
                l.fresh || l.memory.data(&l.store).len() == l.pristine.bytes.len()
            });
        let mut cost = 0;
        if !reusable {
            let live = self.instantiate()?;
            cost = INSTANCE_FUEL
                + pages_of(live.pristine.bytes.len()) * PAGE_FUEL
                + self.loaded.table_elements * TABLE_ELEMENT_FUEL;
            self.live = Some(live);
        }
        let live = self.live.as_mut().ok_or_else(|| ActionError::Trap("no instance".into()))?;
        if !live.fresh {
            cost += pages_of(live.pristine.bytes.len()) * PAGE_FUEL;
            live.pristine.restore(live.memory.data_mut(&mut live.store));
            for (global, value) in &live.globals {
                global
                    .set(&mut live.store, value.clone())
                    .map_err(|e| ActionError::Trap(shorten(&e.to_string())))?;
            }
        }
        live.fresh = false;
        Ok((live, cost))
    }
}

/// Compiles `bytes` in `engine` as sessions run them: with its globals exported for resets
/// when that can be done (then also how many there are). The check compiles through here
/// too, so that it refuses exactly what execution would.
pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> Result<(Module, Option<u32>), ModuleError> {
    let compile =
        |b: &[u8]| Module::new(engine, b).map_err(|e| ModuleError::Compile(e.to_string()));
    match crate::globals::export_globals(bytes) {
        Some((prepared, globals)) => Ok((compile(&prepared)?, Some(globals))),
        None => Ok((compile(bytes)?, None)),
    }
}

/// Pages of `bytes` of memory.
fn pages_of(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(PAGE)
}

impl ModuleSession for Session<'_> {
    fn run(&mut self, call: &Call<'_>) -> Result<Used, ActionError> {
        let metered = self.metered;
        let state = self.state;
        let instance_fuel = call.block.rules.has(Rules::V2);
        // A module stored under rules 1 may have a larger table than rules 2 register; it does
        // not run under rules 2 (refused before anything is set up, on every peer alike).
        let elements = self.loaded.table_elements;
        if instance_fuel && elements > MAX_TABLE_ELEMENTS {
            return Err(ActionError::Trap(format!(
                "the module's tables have {elements} elements; at most {MAX_TABLE_ELEMENTS} under rules 2"
            )));
        }
        let (live, cost) = self.ready()?;
        let cost = if instance_fuel { cost } else { 0 };
        if metered && cost > call.fuel {
            return Err(ActionError::OutOfFuel(call.fuel));
        }
        let data = live.store.data_mut();
        data.action.clear();
        data.action.push_str(call.action);
        data.input.clear();
        data.input.extend_from_slice(call.input);
        data.caller.clear();
        data.caller.extend_from_slice(call.caller.as_bytes());
        data.block = call.block;
        data.writes.clear();
        data.written = Budget::default();
        data.limit = call.limit;
        data.rules = call.block.rules;
        if metered {
            live.store.set_fuel(call.fuel - cost).map_err(|e| ActionError::Trap(e.to_string()))?;
        }
        let result = live.run.call(&mut live.store, ());
        // Whatever happened, the next action starts over.
        let writes = std::mem::take(&mut live.store.data_mut().writes);
        let written = live.store.data().written;
        match result {
            Ok(0) => {}
            Ok(n) => return Err(ActionError::ModuleReturned(n)),
            Err(e) => {
                return Err(match e.downcast_ref::<Exit>() {
                    Some(Exit::Fail(message)) => ActionError::ModuleFailed(message.clone()),
                    Some(Exit::Storage(e)) => ActionError::Storage(e.clone()),
                    None => trap(&e, call.fuel),
                });
            }
        }
        let fuel = if metered { call.fuel - live.store.get_fuel().unwrap_or(0) } else { 0 };
        for (key, value) in writes {
            match value {
                Some(v) => state.set(call.action, &key, &v),
                None => state.remove(call.action, &key),
            }
        }
        Ok(Used { fuel, written })
    }

    fn pages(&self) -> u64 {
        self.live.as_ref().map_or(0, |l| {
            pages_of(l.memory.data(&l.store).len()) + pages_of(l.pristine.bytes.len())
        })
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

type HostResult<T> = Result<T, wasmi::Error>;
type C<'a, 'h> = Caller<'a, Data<'h>>;

/// Charges `n` fuel; with too little left the module stops out of fuel.
fn charge(caller: &mut C<'_, '_>, n: u64) -> HostResult<()> {
    let Ok(left) = caller.get_fuel() else { return Ok(()) };
    if left < n {
        let _ = caller.set_fuel(0);
        return Err(wasmi::Error::from(TrapCode::OutOfFuel));
    }
    caller.set_fuel(left - n)
}

fn bad(what: String) -> wasmi::Error {
    wasmi::Error::new(what)
}

/// `ptr..ptr + len` as a range inside the memory, or a trap.
fn range(
    caller: &C<'_, '_>,
    memory: Memory,
    ptr: i32,
    len: i32,
    what: &str,
) -> HostResult<(usize, usize)> {
    let (Ok(ptr), Ok(len)) = (u32::try_from(ptr), u32::try_from(len)) else {
        return Err(bad(format!("{what}: a negative pointer or length")));
    };
    let end = u64::from(ptr) + u64::from(len);
    if end > memory.data_size(caller) as u64 {
        return Err(bad(format!("{what}: outside the module's memory")));
    }
    Ok((ptr as usize, end as usize))
}

fn memory_of(caller: &C<'_, '_>) -> HostResult<Memory> {
    caller.data().memory.ok_or_else(|| bad("no memory".into()))
}

/// Where a key of `len` bytes at `ptr` is in memory, or a trap.
fn key_range(
    caller: &C<'_, '_>,
    memory: Memory,
    ptr: i32,
    len: i32,
    what: &str,
) -> HostResult<(usize, usize)> {
    if !(1..=MAX_KEY_LEN as i32).contains(&len) {
        return Err(bad(format!("{what}: a key of {len} bytes (1 to {MAX_KEY_LEN})")));
    }
    range(caller, memory, ptr, len, what)
}

fn key_of(
    caller: &C<'_, '_>,
    memory: Memory,
    ptr: i32,
    len: i32,
    what: &str,
) -> HostResult<Vec<u8>> {
    let (start, end) = key_range(caller, memory, ptr, len, what)?;
    Ok(memory.data(caller)[start..end].to_vec())
}

fn input_len(mut c: C<'_, '_>) -> HostResult<i32> {
    charge(&mut c, IMPORT_FUEL)?;
    Ok(c.data().input.len() as i32)
}

fn input_read(mut c: C<'_, '_>, ptr: i32) -> HostResult<()> {
    let n = c.data().input.len();
    charge(&mut c, IMPORT_FUEL + n as u64)?;
    let memory = memory_of(&c)?;
    let (start, end) = range(&c, memory, ptr, n as i32, "input_read")?;
    let (mem, data) = memory.data_and_store_mut(&mut c);
    mem[start..end].copy_from_slice(&data.input);
    Ok(())
}

fn caller_id(mut c: C<'_, '_>, ptr: i32) -> HostResult<()> {
    let n = c.data().caller.len();
    charge(&mut c, IMPORT_FUEL + n as u64)?;
    let memory = memory_of(&c)?;
    let (start, end) = range(&c, memory, ptr, n as i32, "caller")?;
    let (mem, data) = memory.data_and_store_mut(&mut c);
    mem[start..end].copy_from_slice(&data.caller);
    Ok(())
}

fn seq(mut c: C<'_, '_>) -> HostResult<i64> {
    charge(&mut c, IMPORT_FUEL)?;
    Ok(c.data().block.seq as i64)
}

fn time(mut c: C<'_, '_>) -> HostResult<i64> {
    charge(&mut c, IMPORT_FUEL)?;
    Ok(c.data().block.time as i64)
}

fn get(mut c: C<'_, '_>, kptr: i32, klen: i32, vptr: i32, vcap: i32) -> HostResult<i32> {
    charge(&mut c, IMPORT_FUEL)?;
    let memory = memory_of(&c)?;
    let (kstart, kend) = key_range(&c, memory, kptr, klen, "get")?;
    charge(&mut c, (kend - kstart) as u64)?;
    // The value's room must be inside memory, whether or not the value is written there.
    let (start, _) = range(&c, memory, vptr, vcap, "get")?;
    let value = {
        let key = &memory.data(&c)[kstart..kend];
        let data = c.data();
        match data.writes.get(key) {
            Some(v) => v.clone(),
            None => data
                .state
                .get(&data.action, key)
                .map_err(|e| wasmi::Error::host(Exit::Storage(e)))?,
        }
    };
    let Some(value) = value else { return Ok(-1) };
    charge(&mut c, value.len() as u64)?;
    if value.len() <= vcap as usize {
        memory.data_mut(&mut c)[start..start + value.len()].copy_from_slice(&value);
    }
    Ok(value.len() as i32)
}

fn set(mut c: C<'_, '_>, kptr: i32, klen: i32, vptr: i32, vlen: i32) -> HostResult<()> {
    charge(&mut c, IMPORT_FUEL)?;
    let memory = memory_of(&c)?;
    let key = key_of(&c, memory, kptr, klen, "set")?;
    if !(0..=MAX_VALUE_LEN as i32).contains(&vlen) {
        return Err(bad(format!("set: a value of {vlen} bytes (at most {MAX_VALUE_LEN})")));
    }
    let (start, end) = range(&c, memory, vptr, vlen, "set")?;
    charge(&mut c, (key.len() + (end - start)) as u64)?;
    let value = memory.data(&c)[start..end].to_vec();
    let data = c.data_mut();
    if !data.rules.has(Rules::V2) {
        data.written.bytes += (key.len() + value.len()) as u64;
        if data.written.bytes > V1_MAX_WRITTEN {
            return Err(bad(format!("set: more than {MAX_WRITTEN} bytes written by one action")));
        }
    } else {
        count_write(data, (key.len() + value.len()) as u64, "set")?;
    }
    data.writes.insert(key, Some(value));
    Ok(())
}

/// Counts one entry written (set or removed, rules version 2): its bytes and
/// [`ENTRY_COST`]; traps once the action's limit is passed.
fn count_write(data: &mut Data<'_>, bytes: u64, what: &str) -> HostResult<()> {
    data.written.bytes += bytes + ENTRY_COST;
    data.written.entries += 1;
    let left = data.limit.left;
    if data.written.bytes > left.bytes || data.written.entries > left.entries {
        return Err(bad(format!(
            "{what}: the {} write budget is spent ({} bytes and {} entries were left to this action)",
            data.limit.scope, left.bytes, left.entries
        )));
    }
    Ok(())
}

fn remove(mut c: C<'_, '_>, kptr: i32, klen: i32) -> HostResult<()> {
    charge(&mut c, IMPORT_FUEL)?;
    let memory = memory_of(&c)?;
    let key = key_of(&c, memory, kptr, klen, "remove")?;
    charge(&mut c, key.len() as u64)?;
    let data = c.data_mut();
    if data.rules.has(Rules::V2) {
        count_write(data, key.len() as u64, "remove")?;
    }
    data.writes.insert(key, None);
    Ok(())
}

fn fail(mut c: C<'_, '_>, ptr: i32, len: i32) -> HostResult<()> {
    charge(&mut c, IMPORT_FUEL)?;
    let memory = memory_of(&c)?;
    // The whole message must be in memory; only its first bytes are kept.
    let (start, end) = range(&c, memory, ptr, len, "fail")?;
    let kept = &memory.data(&c)[start..end.min(start + MAX_MESSAGE)];
    let text = String::from_utf8_lossy(kept).into_owned();
    Err(wasmi::Error::host(Exit::Fail(shorten(&text))))
}

/// The ABI's imports (`docs/wasm.md`), for a session's stores.
fn linker<'h>(engine: &Engine) -> Linker<Data<'h>> {
    let mut l = Linker::new(engine);
    let once = "the ABI's imports have distinct names";
    l.func_wrap("swarmvm", "input_len", input_len).expect(once);
    l.func_wrap("swarmvm", "input_read", input_read).expect(once);
    l.func_wrap("swarmvm", "caller", caller_id).expect(once);
    l.func_wrap("swarmvm", "seq", seq).expect(once);
    l.func_wrap("swarmvm", "time", time).expect(once);
    l.func_wrap("swarmvm", "get", get).expect(once);
    l.func_wrap("swarmvm", "set", set).expect(once);
    l.func_wrap("swarmvm", "remove", remove).expect(once);
    l.func_wrap("swarmvm", "fail", fail).expect(once);
    l
}

/// The fuel a run of `module` uses for `call` on `state`, its writes made there: for tests
/// and the fuel vector (`tests/vectors/wasm.json`).
pub fn fuel_used(
    runtime: &Runtime,
    module: &Hash32,
    state: &dyn WasmState,
    call: &Call<'_>,
) -> Result<u64, ActionError> {
    runtime.session(module, state)?.run(call).map(|used| used.fuel)
}
