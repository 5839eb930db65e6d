//! What a declaration asks, checked, and the verdict of each preflight
//! check on it: what the planner, the preflight and the journal share.

use crate::overrides::Overrides;
use drctl_core::plan::Scope;
use drctl_core::topology::Topology;
use serde::{Deserialize, Serialize};

/// What the commander declared, checked (see
/// [`DeclarationRequest`](crate::declare::DeclarationRequest) for the raw
/// request). Journaled as it is, and read back on resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Declaration {
    pub zones: Vec<String>,
    pub regions: Vec<String>,
    pub targets: Vec<String>,
    pub reason: String,
    /// The checks the commander lifted, each by name.
    #[serde(default)]
    pub overrides: Overrides,
    pub parallel: Option<usize>,
}

impl Declaration {
    /// Whether a standby may be promoted beyond `max_lag` or of unknown lag.
    pub fn accepts_lag(&self) -> bool {
        self.overrides.accept_lag
    }

    /// The names of the zones the declaration loses, by name or by region.
    pub fn lost_zones(&self, topo: &Topology) -> Vec<String> {
        topo.zones
            .iter()
            .filter(|z| self.zones.contains(&z.name) || self.regions.contains(&z.region))
            .map(|z| z.name.clone())
            .collect()
    }

    pub fn scope(&self) -> Scope {
        Scope { zones: self.zones.clone(), regions: self.regions.clone(), targets: self.targets.clone() }
    }
}

/// One preflight check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub subject: String,
    pub ok: bool,
    pub detail: String,
}
