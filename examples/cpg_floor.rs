//! The floor under every clustered-log request: one bare CPG round trip, an agreed multicast
//! sent and waited for until corosync delivers it back to the sender, with nothing else in
//! the way (no netlink, no actors, no log). The clustered-log bench (tests/kernel/cbench)
//! runs it in the same guest as the daemons it compares, beside their numbers.
//!
//! Needs a running corosync. Run: `cargo run --release --example cpg_floor [ROUND_TRIPS]`;
//! prints `cpg_floor p50_us=<µs> p99_us=<µs> round_trips=<n>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rust_corosync::{cpg, DispatchFlags, NodeId};

/// Messages delivered so far: the deliver callback is a plain `fn`, so it counts here.
static DELIVERED: AtomicU64 = AtomicU64::new(0);

fn on_deliver(_: &cpg::Handle, _: String, _: NodeId, _: u32, _: &[u8], _: usize) {
    DELIVERED.fetch_add(1, Ordering::Relaxed);
}

fn main() -> Result<(), rust_corosync::CsError> {
    let round_trips: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let model = cpg::ModelData::ModelV1(cpg::Model1Data {
        flags: cpg::Model1Flags::None,
        deliver_fn: Some(on_deliver),
        confchg_fn: None,
        totem_confchg_fn: None,
    });
    let handle = cpg::initialize(&model, 0)?;
    let group = format!("cpg-floor-{}", std::process::id());
    cpg::join(&handle, &group)?;
    // A message the size of a MARK op: the header and one region.
    let message = [0u8; 96];
    let mut micros = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let start = Instant::now();
        let wanted = DELIVERED.load(Ordering::Relaxed) + 1;
        cpg::mcast_joined(&handle, cpg::Guarantee::TypeAgreed, &message)?;
        while DELIVERED.load(Ordering::Relaxed) < wanted {
            cpg::dispatch(&handle, DispatchFlags::One)?;
        }
        micros.push(start.elapsed().as_secs_f64() * 1e6);
    }
    cpg::leave(&handle, &group)?;
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    println!("cpg_floor p50_us={:.0} p99_us={:.0} round_trips={round_trips}", at(0.5), at(0.99));
    Ok(())
}
