//! SIGINT, SIGTERM and SIGHUP during a drill: the handler only records the
//! signal; the drill's loops see it within a fraction of a second and return
//! an error, so the VM guards and the work directory are dropped in order.

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::SeqCst);
}

/// Install the handlers (idempotent).
pub fn install() -> Result<()> {
    let action = SigAction::new(SigHandler::Handler(record), SaFlags::SA_RESTART, SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores into an atomic, which is
        // async-signal-safe; no other handler for these signals is relied on.
        #[allow(unsafe_code)]
        unsafe { sigaction(s, &action) }.with_context(|| format!("installing a handler for {s}"))?;
    }
    Ok(())
}

/// The name of the signal received, if any.
pub fn received() -> Option<String> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Some(Signal::try_from(n).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {n}"))),
    }
}
