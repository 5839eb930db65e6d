//! Moving traffic: a service's route (Route53 or the lab's DNS) and a
//! service failover without a runbook.

use super::*;

impl RealActions {
    /// Points a service's route53 record at the zones outside the scope.
    pub(super) async fn switch_route(
        &self,
        route: &drctl_core::topology::Route,
        wait: Duration,
    ) -> Result<String, ActionError> {
        let values: Vec<String> = route
            .records
            .iter()
            .filter(|(z, _)| !self.lost_zones.contains(&self.topo.zones[*z].name))
            .map(|(_, v)| v.clone())
            .collect();
        if values.is_empty() {
            return Err(ActionError::Fatal(format!("every zone of {} is lost: no record to answer with", route.name)));
        }
        if route.kind == RouteKind::LabDns {
            let server = route
                .server
                .as_deref()
                .ok_or_else(|| ActionError::Fatal("the lab-dns route has no `server`".into()))?;
            let zone = route.zone_id.clone().unwrap_or_else(|| drctl_providers::dns::parent_zone(&route.name));
            let timeout = wait.min(Duration::from_secs(10));
            return drctl_providers::dns::replace_a(server, &zone, &route.name, route.ttl as u32, &values, timeout)
                .await
                .map_err(|e| match e {
                    drctl_providers::Error::Refused(m) => ActionError::Fatal(m),
                    other => ActionError::Transient(other.to_string()),
                });
        }
        let zone_id = route.zone_id.as_deref().ok_or_else(|| ActionError::Fatal("the route has no zone_id".into()))?;
        let client = drctl_aws::route53::client(self.clients.sdk().await);
        drctl_aws::route53::upsert(&client, zone_id, &route.name, &route.record_type, route.ttl as i64, &values, wait)
            .await
            .map_err(aws_error)
    }

    /// The route a `route53.*` step means: its `service`, else the service
    /// whose route has this zone and name, else the step's own entity.
    pub(super) fn route_for(
        &self,
        zone_id: &str,
        name: &str,
        service: &Option<String>,
        step: &StepSpec,
    ) -> Option<drctl_core::topology::Route> {
        let routes = self.topo.services().filter_map(|(_, e, s)| s.route.clone().map(|r| (e.name.clone(), r)));
        let by_service = service.as_deref().or(Some(&step.entity));
        let (zone_id, name) = (Some(zone_id), Some(name));
        let all: Vec<(String, drctl_core::topology::Route)> = routes.collect();
        all.iter()
            .find(|(_, r)| {
                zone_id.is_some()
                    && r.zone_id.as_deref() == zone_id
                    && Some(r.name.trim_end_matches('.')) == name.map(|n| n.trim_end_matches('.'))
            })
            .or_else(|| all.iter().find(|(svc, _)| Some(svc.as_str()) == by_service))
            .map(|(_, r)| r.clone())
    }

    /// `route53.failover`: the service route answers with the zones outside the scope.
    pub(super) async fn route53_failover(
        &self,
        step: &StepSpec,
        zone_id: String,
        name: String,
        service: Option<String>,
    ) -> Result<Note, ActionError> {
        let route = self
            .route_for(&zone_id, &name, &service, step)
            .ok_or_else(|| ActionError::Fatal("no service route matches this step's zone_id and name".into()))?;
        self.switch_route(&route, Self::wait_for(step)).await.map(Some)
    }

    /// `dns.failover`: a lab-dns route switched to the zones outside the scope.
    pub(super) async fn dns_failover(&self, step: &StepSpec, service: Option<String>) -> Result<Note, ActionError> {
        let name = service.as_deref().unwrap_or(&step.entity);
        let route = self
            .topo
            .entity_id(name)
            .and_then(|i| match &self.topo.entity(i).spec {
                EntitySpec::Service(svc) => svc.route.clone(),
                EntitySpec::Datastore(_) => None,
            })
            .filter(|r| r.kind == RouteKind::LabDns)
            .ok_or_else(|| ActionError::Fatal(format!("service `{name}` has no lab-dns route")))?;
        self.switch_route(&route, Self::wait_for(step)).await.map(Some)
    }

    /// A service without a runbook: its route switched, then its health verified.
    pub(super) async fn service_failover(&self, step: &StepSpec, service: Option<String>) -> Result<Note, ActionError> {
        let name = service.as_deref().unwrap_or(&step.entity);
        let e = self
            .topo
            .entity(self.topo.entity_id(name).ok_or_else(|| ActionError::Fatal(format!("no service {name}")))?);
        let EntitySpec::Service(svc) = &e.spec else {
            return Err(ActionError::Fatal(format!("{name} is not a service")));
        };
        let mut notes = Vec::new();
        if let Some(route) = &svc.route {
            notes.push(self.switch_route(route, Self::wait_for(step)).await?);
        }
        if let Some(h) = &svc.health {
            // Healthy wherever the route now answers: each remaining zone's
            // own URL, or the shared one.
            let lost = |z: usize| self.lost_zones.contains(&self.topo.zones[z].name);
            for url in h.urls_outside(lost) {
                if let Some(n) = self.health(url, Duration::from_secs(60), Duration::from_millis(250), None).await? {
                    notes.push(n);
                }
            }
        }
        if notes.is_empty() {
            notes.push("no route or health check to act on".into());
        }
        Ok(Some(notes.join("; ")))
    }
}
