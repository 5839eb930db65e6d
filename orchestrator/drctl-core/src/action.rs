//! The actions a failover step can take: the one list.
//!
//! Runbook validation, the planner and the controller's dispatcher all
//! name actions through [`Action`]; the dispatcher matches on it
//! exhaustively, so an action cannot be accepted by validation and then be
//! missing at execution (a match arm forgotten is a compile error), and
//! there is no second list to drift from this one.

/// Every action drctl performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    PostgresFence,
    PostgresPromote,
    RdsPromoteReadReplica,
    RdsFailoverDbCluster,
    S3PromoteReplica,
    Route53Upsert,
    Route53Failover,
    DnsFailover,
    HttpHealth,
    HttpRequest,
    Exec,
    Wait,
    Approval,
    Notify,
    /// A service's own failover without a runbook: switch its route, then
    /// verify its health. Made by the planner; not for runbooks.
    ServiceFailover,
}

impl Action {
    pub const ALL: [Action; 15] = [
        Action::PostgresFence,
        Action::PostgresPromote,
        Action::RdsPromoteReadReplica,
        Action::RdsFailoverDbCluster,
        Action::S3PromoteReplica,
        Action::Route53Upsert,
        Action::Route53Failover,
        Action::DnsFailover,
        Action::HttpHealth,
        Action::HttpRequest,
        Action::Exec,
        Action::Wait,
        Action::Approval,
        Action::Notify,
        Action::ServiceFailover,
    ];

    /// The name runbooks, plans and the journal use.
    pub fn name(self) -> &'static str {
        match self {
            Action::PostgresFence => "postgres.fence",
            Action::PostgresPromote => "postgres.promote",
            Action::RdsPromoteReadReplica => "rds.promote_read_replica",
            Action::RdsFailoverDbCluster => "rds.failover_db_cluster",
            Action::S3PromoteReplica => "s3.promote_replica",
            Action::Route53Upsert => "route53.upsert",
            Action::Route53Failover => "route53.failover",
            Action::DnsFailover => "dns.failover",
            Action::HttpHealth => "http.health",
            Action::HttpRequest => "http.request",
            Action::Exec => "exec",
            Action::Wait => "wait",
            Action::Approval => "approval",
            Action::Notify => "notify",
            Action::ServiceFailover => "service.failover",
        }
    }

    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether a runbook step may use it.
    pub fn in_runbooks(self) -> bool {
        self != Action::ServiceFailover
    }

    /// Whether it checks the world before acting, so that running it again
    /// after a crash does no harm. The others (a program, a webhook) cannot
    /// know whether their effect already happened.
    pub fn checks_the_world(self) -> bool {
        !matches!(self, Action::Exec | Action::HttpRequest | Action::Notify)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_and_every_runbook_action_has_a_spec() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.name()), Some(a));
            let specs = crate::runbook::ACTIONS.iter().filter(|s| s.action == a).count();
            assert_eq!(specs, usize::from(a.in_runbooks()), "{a}: one spec per runbook action, none otherwise");
        }
        assert_eq!(crate::runbook::ACTIONS.len(), Action::ALL.len() - 1);
        assert_eq!(Action::parse("postgres.promot"), None);
    }
}
