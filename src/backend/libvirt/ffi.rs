//! The only `unsafe` in prescient: a small safe layer over the raw libvirt calls that the
//! `virt` crate lacks or gets wrong (see docs/architecture.md, "libvirt layer").
//!
//! * `virConnectGetAllDomainStats` through [`Conn::all_domain_stats`], whose record list is
//!   freed with `virDomainStatsRecordListFree` (the crate's wrapper leaks it) and whose typed
//!   parameters are copied into owned Rust values without panicking on unexpected types.
//! * `virNodeGetMemoryStats`, domain lifecycle and metadata events.
//! * The setters (scheduler parameters, balloon target, block I/O throttles) and their
//!   getters, with typed parameters built and freed here, and errors that keep libvirt's
//!   code ([`LibvirtError`]) so that a vanished domain is told apart from a refusal.
//! * Every libvirt object is owned by an RAII guard whose `Drop` never panics.
//!
//! All of these calls block: callers keep them off the async runtime.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::ptr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use virt::sys;

/// A typed parameter's value, copied out of libvirt's union.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    UInt(u64),
    Double(f64),
    Bool(bool),
    Str(String),
}

/// One domain's record of a bulk stats call, fully owned.
#[derive(Debug, Clone)]
pub struct RawDomainStats {
    pub name: String,
    pub uuid: String,
    pub params: Vec<(String, Param)>,
}

/// Node information (`virNodeGetInfo`).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub memory_kib: u64,
    pub cpus: u32,
    pub mhz: u32,
}

/// The message of libvirt's last error on this thread.
fn last_error() -> String {
    let e = virt::error::Error::last_error();
    let msg = e.message().trim().to_string();
    if msg.is_empty() {
        "unknown libvirt error".to_string()
    } else {
        msg
    }
}

/// A failed libvirt call: libvirt's error number (`virErrorNumber`) and its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LibvirtError {
    pub code: i32,
    pub message: String,
}

impl LibvirtError {
    /// The domain does not exist (any more).
    pub fn is_no_domain(&self) -> bool {
        self.code == sys::VIR_ERR_NO_DOMAIN as i32
    }

    /// libvirt's last error on this thread, with its code.
    fn last() -> LibvirtError {
        // SAFETY: plain library call; the error object is owned by libvirt's thread-local
        // storage and only read here, before any other libvirt call on this thread.
        let e = unsafe { sys::virGetLastError() };
        if e.is_null() {
            return LibvirtError {
                code: 0,
                message: "unknown libvirt error".into(),
            };
        }
        // SAFETY: e is non-null and points to a valid virError.
        let (code, msg) = unsafe { ((*e).code, (*e).message) };
        let message = if msg.is_null() {
            "unknown libvirt error".to_string()
        } else {
            // SAFETY: a non-null message is a NUL-terminated string owned by the error.
            unsafe { CStr::from_ptr(msg) }
                .to_string_lossy()
                .trim()
                .to_string()
        };
        LibvirtError { code, message }
    }
}

/// A typed parameter list we build for a setter, freed on drop.
struct TypedParams {
    ptr: sys::virTypedParameterPtr,
    n: c_int,
    max: c_int,
}

impl TypedParams {
    fn new() -> Self {
        TypedParams {
            ptr: ptr::null_mut(),
            n: 0,
            max: 0,
        }
    }

    fn add_ullong(&mut self, name: &CStr, value: u64) -> Result<(), LibvirtError> {
        // SAFETY: ptr/n/max describe a list libvirt allocated (or NULL/0/0); libvirt grows it
        // in place and copies the name.
        let rc = unsafe {
            sys::virTypedParamsAddULLong(
                &mut self.ptr,
                &mut self.n,
                &mut self.max,
                name.as_ptr(),
                value,
            )
        };
        if rc < 0 {
            Err(LibvirtError::last())
        } else {
            Ok(())
        }
    }

    fn add_llong(&mut self, name: &CStr, value: i64) -> Result<(), LibvirtError> {
        // SAFETY: as in add_ullong.
        let rc = unsafe {
            sys::virTypedParamsAddLLong(
                &mut self.ptr,
                &mut self.n,
                &mut self.max,
                name.as_ptr(),
                value,
            )
        };
        if rc < 0 {
            Err(LibvirtError::last())
        } else {
            Ok(())
        }
    }
}

impl Drop for TypedParams {
    fn drop(&mut self) {
        // SAFETY: ptr holds n parameters allocated by virTypedParamsAdd*; freed once, here.
        unsafe { sys::virTypedParamsFree(self.ptr, self.n) };
    }
}

/// A parameter list libvirt fills for a getter: `n` zeroed slots, cleared (strings freed) on
/// drop.
struct ParamSlots(Vec<sys::virTypedParameter>);

impl ParamSlots {
    fn new(n: c_int) -> Self {
        // SAFETY: an all-zero virTypedParameter is a valid (empty) value of this C struct.
        ParamSlots(vec![unsafe { std::mem::zeroed() }; n.max(0) as usize])
    }
}

impl Drop for ParamSlots {
    fn drop(&mut self) {
        // SAFETY: the slots are zeroed or filled by libvirt; Clear frees only the strings it
        // allocated and leaves the array (ours) alone.
        unsafe { sys::virTypedParamsClear(self.0.as_mut_ptr(), self.0.len() as c_int) };
    }
}

/// Copy a NUL-terminated C buffer of fixed size into a String, tolerating a missing NUL.
fn fixed_cstr(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

static EVENT_LOOP: OnceLock<Result<(), String>> = OnceLock::new();

unsafe extern "C" fn wake_tick(_timer: c_int, _opaque: *mut c_void) {}

/// Register libvirt's default event loop and run it on a background thread, once per process.
/// Must run before the connection whose events we want is opened.
pub fn start_event_loop() -> Result<(), String> {
    EVENT_LOOP
        .get_or_init(|| {
            // SAFETY: plain library call without pointers; libvirt serialises it internally.
            if unsafe { sys::virEventRegisterDefaultImpl() } < 0 {
                return Err(last_error());
            }
            // A timer so that the loop wakes at least every second even without events.
            // SAFETY: the callback ignores its arguments and needs no opaque data or free.
            unsafe { sys::virEventAddTimeout(1000, Some(wake_tick), ptr::null_mut(), None) };
            std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| {
                    loop {
                        // SAFETY: the default implementation was registered above.
                        if unsafe { sys::virEventRunDefaultImpl() } < 0 {
                            std::thread::sleep(std::time::Duration::from_secs(1));
                        }
                    }
                })
                .map_err(|e| format!("cannot start the libvirt event thread: {e}"))?;
            Ok(())
        })
        .clone()
}

/// An open libvirt connection. Closing never panics.
pub struct Conn {
    ptr: sys::virConnectPtr,
    callbacks: Vec<c_int>,
}

// SAFETY: libvirt connections are thread-safe (documented: "a connection can be used from
// multiple threads"); the pointer is only released in Drop.
unsafe impl Send for Conn {}

impl Drop for Conn {
    fn drop(&mut self) {
        for id in self.callbacks.drain(..) {
            // SAFETY: ptr is a live connection owned by self; the id came from
            // virConnectDomainEventRegisterAny on it. A failure (dead connection) is harmless.
            unsafe { sys::virConnectDomainEventDeregisterAny(self.ptr, id) };
        }
        // SAFETY: ptr came from virConnectOpen and is closed exactly once, here.
        unsafe { sys::virConnectClose(self.ptr) };
    }
}

/// libvirt's CPU bitmap of `cpus` (bit c of byte c / 8).
fn cpumap(cpus: &[u32]) -> Vec<u8> {
    let len = cpus.iter().max().map_or(1, |m| (*m / 8 + 1) as usize);
    let mut map = vec![0u8; len];
    for c in cpus {
        map[(*c / 8) as usize] |= 1 << (c % 8);
    }
    map
}

/// The CPUs (below `cpus`) set in a libvirt CPU bitmap.
fn cpus_of(map: &[u8], cpus: u32) -> Vec<u32> {
    (0..cpus)
        .filter(|c| {
            map.get((*c / 8) as usize)
                .is_some_and(|b| b & (1 << (c % 8)) != 0)
        })
        .collect()
}

/// A domain reference, freed on drop.
struct DomRef(sys::virDomainPtr);

impl Drop for DomRef {
    fn drop(&mut self) {
        // SAFETY: the pointer was returned with a reference we own.
        unsafe { sys::virDomainFree(self.0) };
    }
}

/// The record list of `virConnectGetAllDomainStats`, freed with the matching libvirt call.
struct StatsList {
    ptr: *mut sys::virDomainStatsRecordPtr,
    len: usize,
}

impl Drop for StatsList {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: ptr is the NULL-terminated list libvirt returned; freed exactly once.
            unsafe { sys::virDomainStatsRecordListFree(self.ptr) };
        }
    }
}

/// Name and UUID of a domain pointer.
///
/// # Safety
/// `dom` must be a valid domain pointer for the duration of the call.
unsafe fn domain_identity(dom: sys::virDomainPtr) -> Result<(String, String), String> {
    // SAFETY: dom is valid (the caller promises it); the name is owned by the domain object.
    let name = unsafe { sys::virDomainGetName(dom) };
    if name.is_null() {
        return Err(last_error());
    }
    // SAFETY: non-null, NUL-terminated, valid while dom is.
    let name = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    let mut buf = [0 as c_char; sys::VIR_UUID_STRING_BUFLEN as usize];
    // SAFETY: buf has the documented VIR_UUID_STRING_BUFLEN bytes.
    if unsafe { sys::virDomainGetUUIDString(dom, buf.as_mut_ptr()) } < 0 {
        return Err(last_error());
    }
    Ok((name, fixed_cstr(&buf)))
}

/// Copy typed parameters into owned values.
///
/// # Safety
/// `params` must point to `n` initialised typed parameters (or be NULL with n = 0).
unsafe fn read_params(params: sys::virTypedParameterPtr, n: c_int) -> Vec<(String, Param)> {
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for i in 0..n.max(0) as usize {
        // SAFETY: params holds n initialised elements (the caller promises it) and i < n.
        let p = unsafe { &*params.add(i) };
        let field = fixed_cstr(&p.field);
        // SAFETY: the union member read is the one the type tag names.
        let value = unsafe {
            match p.type_ as c_uint {
                sys::VIR_TYPED_PARAM_INT => Param::Int(p.value.i as i64),
                sys::VIR_TYPED_PARAM_UINT => Param::UInt(p.value.ui as u64),
                sys::VIR_TYPED_PARAM_LLONG => Param::Int(p.value.l),
                sys::VIR_TYPED_PARAM_ULLONG => Param::UInt(p.value.ul),
                sys::VIR_TYPED_PARAM_DOUBLE => Param::Double(p.value.d),
                sys::VIR_TYPED_PARAM_BOOLEAN => Param::Bool(p.value.b != 0),
                sys::VIR_TYPED_PARAM_STRING if !p.value.s.is_null() => {
                    Param::Str(CStr::from_ptr(p.value.s).to_string_lossy().into_owned())
                }
                _ => continue,
            }
        };
        out.push((field, value));
    }
    out
}

unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    _dom: sys::virDomainPtr,
    _event: c_int,
    _detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    // SAFETY: opaque is the Arc<AtomicU64> registered with this callback, alive until the
    // free callback runs.
    let generation = unsafe { &*(opaque as *const AtomicU64) };
    generation.fetch_add(1, Ordering::Relaxed);
    0
}

unsafe extern "C" fn on_metadata(
    _conn: sys::virConnectPtr,
    _dom: sys::virDomainPtr,
    _type: c_int,
    _nsuri: *const c_char,
    opaque: *mut c_void,
) {
    // SAFETY: as in on_lifecycle.
    let generation = unsafe { &*(opaque as *const AtomicU64) };
    generation.fetch_add(1, Ordering::Relaxed);
}

unsafe extern "C" fn free_generation(opaque: *mut c_void) {
    // SAFETY: opaque came from Arc::into_raw in watch_domains; this drops that reference once.
    drop(unsafe { Arc::from_raw(opaque as *const AtomicU64) });
}

impl Conn {
    /// Open a read-write connection.
    pub fn open(uri: &str) -> Result<Conn, String> {
        let c_uri = CString::new(uri).map_err(|_| "URI contains a NUL byte".to_string())?;
        // SAFETY: c_uri is a valid C string for the duration of the call.
        let ptr = unsafe { sys::virConnectOpen(c_uri.as_ptr()) };
        if ptr.is_null() {
            return Err(last_error());
        }
        Ok(Conn {
            ptr,
            callbacks: Vec::new(),
        })
    }

    /// Whether the connection still reaches libvirtd.
    pub fn is_alive(&self) -> bool {
        // SAFETY: ptr is a live connection owned by self.
        unsafe { sys::virConnectIsAlive(self.ptr) == 1 }
    }

    pub fn hostname(&self) -> Result<String, String> {
        // SAFETY: ptr is live; the returned string is malloc'd and ours to free.
        let p = unsafe { sys::virConnectGetHostname(self.ptr) };
        if p.is_null() {
            return Err(last_error());
        }
        // SAFETY: p is a NUL-terminated string we own; freed right after copying.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: p was allocated by libvirt with malloc.
        unsafe { libc::free(p as *mut c_void) };
        Ok(s)
    }

    pub fn node_info(&self) -> Result<NodeInfo, String> {
        // SAFETY: an all-zero virNodeInfo is a valid value of this plain C struct.
        let mut info: sys::virNodeInfo = unsafe { std::mem::zeroed() };
        // SAFETY: ptr is live and info is a valid out-parameter.
        if unsafe { sys::virNodeGetInfo(self.ptr, &mut info) } < 0 {
            return Err(last_error());
        }
        Ok(NodeInfo {
            memory_kib: info.memory as u64,
            cpus: info.cpus,
            mhz: info.mhz,
        })
    }

    /// Host memory statistics in KiB (`total`, `free`, `buffers`, `cached`).
    pub fn node_memory_stats(&self) -> Result<Vec<(String, u64)>, String> {
        let mut n: c_int = 0;
        let all = sys::VIR_NODE_MEMORY_STATS_ALL_CELLS;
        // SAFETY: with a NULL array libvirt only writes the needed count into n.
        if unsafe { sys::virNodeGetMemoryStats(self.ptr, all, ptr::null_mut(), &mut n, 0) } < 0 {
            return Err(last_error());
        }
        // SAFETY: an all-zero virNodeMemoryStats is valid.
        let mut buf = vec![unsafe { std::mem::zeroed::<sys::virNodeMemoryStats>() }; n as usize];
        // SAFETY: buf has room for n entries, as n tells libvirt.
        if unsafe { sys::virNodeGetMemoryStats(self.ptr, all, buf.as_mut_ptr(), &mut n, 0) } < 0 {
            return Err(last_error());
        }
        Ok(buf
            .iter()
            .take(n.max(0) as usize)
            .map(|s| (fixed_cstr(&s.field), s.value))
            .collect())
    }

    /// One bulk stats call for all active domains.
    pub fn all_domain_stats(&self) -> Result<Vec<RawDomainStats>, String> {
        let stats = sys::VIR_DOMAIN_STATS_STATE
            | sys::VIR_DOMAIN_STATS_CPU_TOTAL
            | sys::VIR_DOMAIN_STATS_BALLOON
            | sys::VIR_DOMAIN_STATS_VCPU
            | sys::VIR_DOMAIN_STATS_INTERFACE
            | sys::VIR_DOMAIN_STATS_BLOCK;
        let mut list: *mut sys::virDomainStatsRecordPtr = ptr::null_mut();
        // SAFETY: ptr is live; list is an out-parameter libvirt fills with a NULL-terminated
        // array that StatsList frees.
        let n = unsafe {
            sys::virConnectGetAllDomainStats(
                self.ptr,
                stats,
                &mut list,
                sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE,
            )
        };
        if n < 0 {
            return Err(last_error());
        }
        let guard = StatsList {
            ptr: list,
            len: n as usize,
        };
        let mut out = Vec::with_capacity(guard.len);
        for i in 0..guard.len {
            // SAFETY: i < n, the number of records libvirt reported; each is non-null.
            let rec = unsafe { &**guard.ptr.add(i) };
            // SAFETY: rec.dom is valid while the list lives.
            let (name, uuid) = match unsafe { domain_identity(rec.dom) } {
                Ok(id) => id,
                Err(_) => continue, // the domain vanished under us: next cycle sees it gone
            };
            // SAFETY: rec.params holds rec.nparams initialised parameters.
            let params = unsafe { read_params(rec.params, rec.nparams) };
            out.push(RawDomainStats { name, uuid, params });
        }
        Ok(out)
    }

    /// The live XML description of the domain with this UUID.
    pub fn domain_xml(&self, uuid: &str) -> Result<String, String> {
        let c_uuid = CString::new(uuid).map_err(|_| "UUID contains a NUL byte".to_string())?;
        // SAFETY: ptr is live, c_uuid a valid C string; the reference is owned by DomRef.
        let dom = unsafe { sys::virDomainLookupByUUIDString(self.ptr, c_uuid.as_ptr()) };
        if dom.is_null() {
            return Err(last_error());
        }
        let dom = DomRef(dom);
        // SAFETY: dom.0 is valid; the returned string is malloc'd and ours.
        let xml = unsafe { sys::virDomainGetXMLDesc(dom.0, 0) };
        if xml.is_null() {
            return Err(last_error());
        }
        // SAFETY: xml is NUL-terminated; freed right after copying.
        let s = unsafe { CStr::from_ptr(xml) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: allocated by libvirt with malloc.
        unsafe { libc::free(xml as *mut c_void) };
        Ok(s)
    }

    fn lookup(&self, uuid: &str) -> Result<DomRef, LibvirtError> {
        let c_uuid = CString::new(uuid).map_err(|_| LibvirtError {
            code: sys::VIR_ERR_INVALID_ARG as i32,
            message: "UUID contains a NUL byte".into(),
        })?;
        // SAFETY: ptr is live, c_uuid a valid C string; the reference is owned by DomRef.
        let dom = unsafe { sys::virDomainLookupByUUIDString(self.ptr, c_uuid.as_ptr()) };
        if dom.is_null() {
            return Err(LibvirtError::last());
        }
        Ok(DomRef(dom))
    }

    /// Set the live CFS bandwidth of every vCPU and the domain's CPU weight.
    pub fn set_cpu(
        &self,
        uuid: &str,
        period_us: u64,
        quota_us: i64,
        shares: u64,
    ) -> Result<(), LibvirtError> {
        let dom = self.lookup(uuid)?;
        let mut p = TypedParams::new();
        p.add_ullong(sys::VIR_DOMAIN_SCHEDULER_VCPU_PERIOD, period_us)?;
        p.add_llong(sys::VIR_DOMAIN_SCHEDULER_VCPU_QUOTA, quota_us)?;
        p.add_ullong(sys::VIR_DOMAIN_SCHEDULER_CPU_SHARES, shares)?;
        // SAFETY: dom is valid; p holds p.n initialised parameters that libvirt only reads.
        let rc = unsafe {
            sys::virDomainSetSchedulerParametersFlags(
                dom.0,
                p.ptr,
                p.n,
                sys::VIR_DOMAIN_AFFECT_LIVE,
            )
        };
        if rc < 0 {
            Err(LibvirtError::last())
        } else {
            Ok(())
        }
    }

    /// Pin each vCPU (by index) and the emulator threads to host CPUs, live.
    pub fn set_pins(
        &self,
        uuid: &str,
        vcpu_cpus: &[Vec<u32>],
        emulator_cpus: &[u32],
    ) -> Result<(), LibvirtError> {
        let dom = self.lookup(uuid)?;
        for (vcpu, cpus) in vcpu_cpus.iter().enumerate() {
            let mut map = cpumap(cpus);
            // SAFETY: dom is valid; map is a live buffer of map.len() bytes libvirt reads.
            let rc = unsafe {
                sys::virDomainPinVcpuFlags(
                    dom.0,
                    vcpu as c_uint,
                    map.as_mut_ptr(),
                    map.len() as c_int,
                    sys::VIR_DOMAIN_AFFECT_LIVE,
                )
            };
            if rc < 0 {
                return Err(LibvirtError::last());
            }
        }
        let mut map = cpumap(emulator_cpus);
        // SAFETY: as above.
        let rc = unsafe {
            sys::virDomainPinEmulator(
                dom.0,
                map.as_mut_ptr(),
                map.len() as c_int,
                sys::VIR_DOMAIN_AFFECT_LIVE,
            )
        };
        if rc < 0 {
            Err(LibvirtError::last())
        } else {
            Ok(())
        }
    }

    /// The host CPUs each of `vcpus` vCPUs and the emulator threads may run on now, on a
    /// host of `cpus` CPUs.
    pub fn pins(
        &self,
        uuid: &str,
        vcpus: u32,
        cpus: u32,
    ) -> Result<(Vec<Vec<u32>>, Vec<u32>), LibvirtError> {
        let dom = self.lookup(uuid)?;
        let maplen = cpus.div_ceil(8).max(1) as usize;
        let mut maps = vec![0u8; maplen * vcpus as usize];
        // SAFETY: dom is valid; maps holds vcpus maps of maplen bytes each for libvirt to fill.
        let n = unsafe {
            sys::virDomainGetVcpuPinInfo(
                dom.0,
                vcpus as c_int,
                maps.as_mut_ptr(),
                maplen as c_int,
                sys::VIR_DOMAIN_AFFECT_LIVE,
            )
        };
        if n < 0 {
            return Err(LibvirtError::last());
        }
        let vcpu_cpus = (maps.chunks(maplen).take(n as usize))
            .map(|m| cpus_of(m, cpus))
            .collect();
        let mut map = vec![0u8; maplen];
        // SAFETY: as above, one map.
        let rc = unsafe {
            sys::virDomainGetEmulatorPinInfo(
                dom.0,
                map.as_mut_ptr(),
                maplen as c_int,
                sys::VIR_DOMAIN_AFFECT_LIVE,
            )
        };
        if rc < 0 {
            return Err(LibvirtError::last());
        }
        Ok((vcpu_cpus, cpus_of(&map, cpus)))
    }

    /// Set the live balloon target (KiB).
    pub fn set_memory(&self, uuid: &str, kib: u64) -> Result<(), LibvirtError> {
        let dom = self.lookup(uuid)?;
        // SAFETY: dom is valid; plain integer arguments.
        let rc = unsafe {
            sys::virDomainSetMemoryFlags(
                dom.0,
                kib as std::ffi::c_ulong,
                sys::VIR_DOMAIN_AFFECT_LIVE,
            )
        };
        if rc < 0 {
            Err(LibvirtError::last())
        } else {
            Ok(())
        }
    }

    /// Set one disk's live throttle (0: unlimited).
    pub fn set_block_iotune(
        &self,
        uuid: &str,
        disk: &str,
        bytes_sec: u64,
        iops_sec: u64,
    ) -> Result<(), LibvirtError> {
        let dom = self.lookup(uuid)?;
        let c_disk = CString::new(disk).map_err(|_| LibvirtError {
            code: sys::VIR_ERR_INVALID_ARG as i32,
            message: "disk name contains a NUL byte".into(),
        })?;
        let mut p = TypedParams::new();
        p.add_ullong(sys::VIR_DOMAIN_BLOCK_IOTUNE_TOTAL_BYTES_SEC, bytes_sec)?;
        p.add_ullong(sys::VIR_DOMAIN_BLOCK_IOTUNE_TOTAL_IOPS_SEC, iops_sec)?;
        // SAFETY: dom is valid, c_disk a C string; p holds p.n parameters libvirt only reads.
        let rc = unsafe {
            sys::virDomainSetBlockIoTune(
                dom.0,
                c_disk.as_ptr(),
                p.ptr,
                p.n,
                sys::VIR_DOMAIN_AFFECT_LIVE,
            )
        };
        if rc < 0 {
            Err(LibvirtError::last())
        } else {
            Ok(())
        }
    }

    /// The live scheduler parameters (cpu_shares, vcpu_period, vcpu_quota, …).
    pub fn scheduler_params(&self, uuid: &str) -> Result<Vec<(String, Param)>, LibvirtError> {
        let dom = self.lookup(uuid)?;
        let mut n: c_int = 0;
        // SAFETY: dom is valid; n is an out-parameter; the returned string is ours to free.
        let kind = unsafe { sys::virDomainGetSchedulerType(dom.0, &mut n) };
        if kind.is_null() {
            return Err(LibvirtError::last());
        }
        // SAFETY: allocated by libvirt with malloc; not used after this.
        unsafe { libc::free(kind as *mut c_void) };
        let mut slots = ParamSlots::new(n);
        // SAFETY: slots has room for n parameters, as n tells libvirt; it writes back how
        // many it filled.
        let rc = unsafe {
            sys::virDomainGetSchedulerParametersFlags(
                dom.0,
                slots.0.as_mut_ptr(),
                &mut n,
                sys::VIR_DOMAIN_AFFECT_LIVE,
            )
        };
        if rc < 0 {
            return Err(LibvirtError::last());
        }
        // SAFETY: libvirt initialised the first n slots.
        Ok(unsafe { read_params(slots.0.as_mut_ptr(), n.min(slots.0.len() as c_int)) })
    }

    /// One disk's live throttle parameters (total_bytes_sec, total_iops_sec, …).
    pub fn block_iotune(
        &self,
        uuid: &str,
        disk: &str,
    ) -> Result<Vec<(String, Param)>, LibvirtError> {
        let dom = self.lookup(uuid)?;
        let c_disk = CString::new(disk).map_err(|_| LibvirtError {
            code: sys::VIR_ERR_INVALID_ARG as i32,
            message: "disk name contains a NUL byte".into(),
        })?;
        let mut n: c_int = 0;
        let live = sys::VIR_DOMAIN_AFFECT_LIVE;
        // SAFETY: with NULL params and n = 0 libvirt only writes the count into n.
        if unsafe {
            sys::virDomainGetBlockIoTune(dom.0, c_disk.as_ptr(), ptr::null_mut(), &mut n, live)
        } < 0
        {
            return Err(LibvirtError::last());
        }
        let mut slots = ParamSlots::new(n);
        // SAFETY: slots has room for n parameters, as n tells libvirt.
        let rc = unsafe {
            sys::virDomainGetBlockIoTune(dom.0, c_disk.as_ptr(), slots.0.as_mut_ptr(), &mut n, live)
        };
        if rc < 0 {
            return Err(LibvirtError::last());
        }
        // SAFETY: libvirt initialised the first n slots.
        Ok(unsafe { read_params(slots.0.as_mut_ptr(), n.min(slots.0.len() as c_int)) })
    }

    /// Count lifecycle and metadata events of all domains into `generation`. Needs
    /// [`start_event_loop`] to have run before this connection was opened.
    pub fn watch_domains(&mut self, generation: &Arc<AtomicU64>) -> Result<(), String> {
        type Generic = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void);
        // SAFETY: libvirt calls each callback with the signature of its event id; the
        // transmutes only erase the signature for the generic registration, as the C API does
        // with VIR_DOMAIN_EVENT_CALLBACK.
        let callbacks: [(c_int, Generic); 2] = unsafe {
            [
                (
                    sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
                    std::mem::transmute::<
                        unsafe extern "C" fn(
                            sys::virConnectPtr,
                            sys::virDomainPtr,
                            c_int,
                            c_int,
                            *mut c_void,
                        ) -> c_int,
                        Generic,
                    >(on_lifecycle),
                ),
                (
                    sys::VIR_DOMAIN_EVENT_ID_METADATA_CHANGE as c_int,
                    std::mem::transmute::<
                        unsafe extern "C" fn(
                            sys::virConnectPtr,
                            sys::virDomainPtr,
                            c_int,
                            *const c_char,
                            *mut c_void,
                        ),
                        Generic,
                    >(on_metadata),
                ),
            ]
        };
        for (event, cb) in callbacks {
            let opaque = Arc::into_raw(Arc::clone(generation)) as *mut c_void;
            // SAFETY: ptr is live; opaque is an Arc reference released by free_generation,
            // which libvirt calls once when the callback is deregistered (or registration
            // fails, handled below).
            let id = unsafe {
                sys::virConnectDomainEventRegisterAny(
                    self.ptr,
                    ptr::null_mut(),
                    event,
                    Some(cb),
                    opaque,
                    Some(free_generation),
                )
            };
            if id < 0 {
                // Whether libvirt already ran freecb on failure differs between versions:
                // leak the one Arc reference rather than risk a double free.
                return Err(last_error());
            }
            self.callbacks.push(id);
        }
        Ok(())
    }
}

/// Stop libvirt from printing its errors on stderr: we report them ourselves.
pub fn quiet_errors() {
    virt::error::clear_error_callback();
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_bitmaps_round_trip() {
        for cpus in [vec![0], vec![1, 3], vec![0, 7, 8, 15, 16], vec![]] {
            assert_eq!(super::cpus_of(&super::cpumap(&cpus), 32), cpus);
        }
    }
}
