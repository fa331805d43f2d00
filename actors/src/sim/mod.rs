//! The kernel side of the protocol, simulated, with an oracle of what must hold.
//!
//! [`KernelLink`] is dm-log-userspace's transfer layer (seq numbers, timeouts, resends),
//! [`SimLog`] one mirror's log as dm-log-userspace and dm-raid1 drive it, [`Oracle`] the
//! invariants checked at every reply, and [`drive`] a random dm-raid1 workload. Tests,
//! benches, examples and `dm-ulogd simulate` all use it.

mod kernel_image;
mod link;
pub mod load;
mod mirror;
mod oracle;

pub use kernel_image::KernelImage;
pub use link::{Answer, KernelLink, LinkError};
pub use mirror::{Failed, LogTable, SimLog};
pub use oracle::Oracle;

/// A small, seedable random generator (xorshift64*), so runs can be repeated.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Runs `steps` steps of a random dm-raid1 workload on `log`: writes, completions,
/// recovery, status and audits, with a rare suspend / resume cycle.
pub async fn drive(log: &mut SimLog, rng: &mut Rng, steps: u64) -> Result<(), Failed> {
    let regions = log.region_count();
    for _ in 0..steps {
        let in_flight = log.oracle.writes_in_flight();
        match rng.below(100) {
            0..=49 if in_flight.len() < 24 => {
                let batch: Vec<u64> = (0..1 + rng.below(4)).map(|_| rng.below(regions)).collect();
                log.write(&batch).await?;
            }
            0..=79 => {
                let done: Vec<u64> =
                    in_flight.iter().copied().filter(|_| rng.below(2) == 0).collect();
                log.complete(&done).await?;
            }
            80..=89 => {
                log.recover().await?;
            }
            90..=94 => {
                log.status().await?;
            }
            95..=98 => log.audit().await?,
            _ => log.suspend_resume().await?,
        }
    }
    Ok(())
}
