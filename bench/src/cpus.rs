//! Cores for the measurement. The measured child (`ceiling`, `fanout`) gets one core of its
//! own, as a Lambda instance has its vCPU; the orchestrator with its receiver, the stub, the
//! emulator and the cold-start runs share the others. Left to the scheduler on a 2-core
//! machine, the measured process and the receiver met on one core at random: the same
//! batch's CPU time varied by 2x from one run to the next.

use std::sync::OnceLock;

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// The core a measured child pins itself to, passed down by the orchestrator.
const CPU_VAR: &str = "WEBHOOKS_BENCH_CPU";

static MEASURED: OnceLock<Option<usize>> = OnceLock::new();

/// In the orchestrator, before any thread starts: keeps the last of this process's cores
/// for the measured children and pins this process (and so everything it starts) to the
/// others. On one core, nothing is pinned.
pub fn reserve_for_measured() -> Option<usize> {
    *MEASURED.get_or_init(|| {
        let available = sched_getaffinity(None).ok()?;
        let cores: Vec<usize> = (0..CpuSet::MAX_CPU)
            .filter(|&c| available.is_set(c))
            .collect();
        let (&measured, rest) = cores.split_last()?;
        if rest.is_empty() {
            return None;
        }
        let mut others = CpuSet::new();
        for &c in rest {
            others.set(c);
        }
        sched_setaffinity(None, &others).ok()?;
        Some(measured)
    })
}

/// The variable that tells a measured child its core, if one was reserved.
pub fn for_child() -> Option<(&'static str, String)> {
    MEASURED
        .get()
        .copied()
        .flatten()
        .map(|c| (CPU_VAR, c.to_string()))
}

/// In a measured child, before any thread starts: moves to the reserved core, if any.
pub fn pin_measured() {
    let Some(core) = std::env::var(CPU_VAR)
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    else {
        return;
    };
    let mut set = CpuSet::new();
    set.set(core);
    if let Err(e) = sched_setaffinity(None, &set) {
        eprintln!("webhooks-bench: could not move to core {core}: {e}");
    }
}
