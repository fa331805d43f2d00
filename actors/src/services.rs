//! [`Services`]: what the socket actor hands every log actor it starts, of whatever kind:
//! where replies go, the engine's counters, and the table of log devices in use.

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::store::DeviceClaims;
use crate::transport::ReplySink;

/// The engine's shared parts, as one log actor needs them.
#[derive(Clone)]
pub(crate) struct Services {
    pub sink: ReplySink,
    pub metrics: Arc<Metrics>,
    pub claims: Arc<DeviceClaims>,
}
