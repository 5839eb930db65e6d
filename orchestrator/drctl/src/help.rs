//! The end of each command's `--help` (and of its man page): an example to
//! start from and what its exit codes mean. Kept apart from `flags` so the
//! flag definitions stay readable; a test in `flags` checks that every
//! command has both.
//!
//! The exit codes are drctl's four everywhere: 0 done, 1 failed at run
//! time, 2 bad input (a file, a flag, a refused request), 3 ran but an
//! objective is missed. docs/reference/exit-and-error-codes.md lists them
//! with the error codes.

/// `drctl` itself.
pub const DRCTL: &str = "\
Example:
  drctl validate -f examples/saas/drctl.yaml
  drctl plan -f examples/saas/drctl.yaml --zone use1-az1

Exit codes:
  0  done
  1  failed at run time (a system did not answer, a step failed)
  2  bad input: a file or a flag (each problem printed with file:line:column)
  3  ran, but an objective is not met (plan, status, declare, drill)

Every command has its own --help and man page (drctl-COMMAND(1));
docs/reference/cli.md describes every command, docs/reference/
exit-and-error-codes.md the exit and error codes.";

pub const VALIDATE: &str = "\
Example:
  drctl validate -f examples/saas/drctl.yaml

Exit codes:
  0  the topology and its runbooks are valid (warnings may be printed)
  2  a file has errors: every one is printed with file:line:column";

pub const PLAN: &str = "\
Example:
  drctl plan -f examples/saas/drctl.yaml --zone use1-az1

Exit codes:
  0  every affected entity meets its RTO target
  2  bad input: the topology, a runbook or a flag
  3  an RTO target is missed or an entity cannot fail over";

pub const GRAPH: &str = "\
Example:
  drctl graph -f examples/saas/drctl.yaml --zone use1-az1 --format mermaid

Exit codes:
  0  the graph was printed
  2  bad input: the topology or a flag";

pub const IAM_POLICY: &str = "\
Example:
  drctl iam-policy -f examples/saas/drctl.yaml --for declare
  drctl iam-policy -f examples/saas/drctl.yaml --for restore

Restores write into a prefix of the datastore's own bucket, or into a new
bucket whose name starts with `drctl-restore-`; RDS copies are named
`<source>-restored-*` (the default name). See docs/guide/aws.md.

Exit codes:
  0  the policy was printed
  2  bad input: the topology or a flag";

pub const DISCOVER: &str = "\
Example:
  drctl discover --region us-east-1 > drctl.yaml

Exit codes:
  0  the skeleton was printed
  1  AWS could not be read (no credentials, a missing permission: the error says which)
  2  bad input: a flag";

pub const STATUS: &str = "\
Example:
  drctl status -f examples/local/drctl.yaml

Exit codes:
  0  every RPO and RTO objective is met right now
  1  failed at run time
  2  bad input: the topology or a flag
  3  an RPO or RTO objective is not met right now";

pub const REPLICATE: &str = "\
Example:
  drctl replicate --once -f examples/local/drctl.yaml

Exit codes:
  0  every object was copied (or resolved)
  1  some objects could not be copied (each is reported)
  2  bad input: the topology or a flag";

pub const DECLARE: &str = "\
Example:
  drctl declare -f examples/local/drctl.yaml --zone az1 --reason \"az1 lost power\" --dry-run

Exit codes:
  0  failed over, every RTO target met (or, with --dry-run, every check passed)
  1  a step failed, the execution was aborted, or a check refused it
  2  bad input, or the request is refused (its error code says why)
  3  failed over, but an RTO target was missed";

pub const RESUME: &str = "\
Example:
  drctl resume -f examples/local/drctl.yaml ID   (ID: see `drctl executions`)

Exit codes:
  0  the execution finished, every RTO target met
  1  a step failed or the execution was aborted
  2  bad input: an unknown id, the topology or a flag
  3  finished, but an RTO target was missed";

pub const RETRY: &str = "\
Example:
  drctl retry -f examples/local/drctl.yaml ID orders-db/failover --accept-lag   (ID: see `drctl executions`)

Exit codes:
  0  the step succeeded and the execution finished
  1  the step failed again (the execution stays paused) or a later one failed
  2  bad input: an unknown id or step, a step that did not fail, a flag
  3  finished, but an RTO target was missed";

pub const SKIP: &str = "\
Example:
  drctl skip -f examples/local/drctl.yaml ID payments/route --yes   (ID: see `drctl executions`)

Exit codes:
  0  the step and what needs it were given up and the rest finished
  1  a later step failed, or the confirmation was not given
  2  bad input: an unknown id or step, a step that did not fail, a flag
  3  finished, but an RTO target was missed";

pub const APPROVE: &str = "\
Example:
  drctl approve ID payments/approve   (ID: see `drctl executions`)

Exit codes:
  0  recorded
  1  failed at run time
  2  bad input: an unknown execution or step, or a step not waiting";

pub const ABORT: &str = "\
Example:
  drctl abort ID   (ID: see `drctl executions`)

Exit codes:
  0  the execution was asked to stop
  1  failed at run time
  2  bad input: an unknown or finished execution";

pub const EXECUTIONS: &str = "\
Example:
  drctl executions --output json

Exit codes:
  0  listed
  1  the state store could not be read";

pub const SHOW: &str = "\
Example:
  drctl show ID -f examples/local/drctl.yaml   (ID: see `drctl executions`)

Exit codes:
  0  shown
  1  the state store could not be read
  2  bad input: an unknown id or the topology";

pub const SCHEMA: &str = "\
Example:
  drctl schema > drctl.schema.json

Exit codes:
  0  printed";

pub const SERVE: &str = "\
Example:
  drctl serve -f examples/saas/drctl.yaml --listen 127.0.0.1:8080

Exit codes:
  0  stopped on Ctrl-C or SIGTERM, every task finished within --shutdown-deadline
  1  failed at run time (the address is taken, tasks outlived the deadline)
  2  bad input: the topology, a TLS file or a flag";

pub const TOKEN: &str = "\
Example:
  drctl token create --name alice --role operator

Exit codes:
  0  done
  1  the state store could not be read or written
  2  bad input: a flag, or an unknown token";

pub const TOKEN_CREATE: &str = "\
Example:
  drctl token create --name alice --role operator

Exit codes:
  0  created (the token is printed once)
  1  the state store could not be written
  2  bad input: a flag, or a name already used";

pub const TOKEN_LIST: &str = "\
Example:
  drctl token list --output json

Exit codes:
  0  listed
  1  the state store could not be read";

pub const TOKEN_REVOKE: &str = "\
Example:
  drctl token revoke alice

Exit codes:
  0  revoked
  1  the state store could not be written
  2  bad input: no token has that name or id";

pub const SUBSCRIPTIONS: &str = "\
Example:
  drctl subscriptions list --output json

Exit codes:
  0  listed
  1  the state store could not be read";

pub const AUDIT: &str = "\
Example:
  drctl audit verify

Exit codes:
  0  done (verify: the chain is intact)
  1  verify: the chain is broken (the first bad entry is named); or a failure at run time
  2  bad input: a flag or a head file";

pub const AUDIT_LIST: &str = "\
Example:
  drctl audit list --output json

Exit codes:
  0  listed
  1  the state store could not be read";

pub const AUDIT_VERIFY: &str = "\
Example:
  drctl audit verify

Exit codes:
  0  the chain is intact (and still holds the given head)
  1  the chain is broken: the first bad entry is named
  2  bad input: a flag or an unreadable head file";

pub const STATUS_PAGE: &str = "\
Example:
  drctl status-page export site/ -f examples/saas/drctl.yaml --base-url https://status.example.com

Exit codes:
  0  written
  1  failed at run time (a measurement, the folder)
  2  bad input: the topology or a flag";

pub const LAB: &str = "\
Example:
  drctl lab up --detach
  drctl lab status
  drctl lab down

Exit codes:
  0  done
  1  failed at run time (a port taken, PostgreSQL missing: the error says which)
  2  bad input: a flag";

pub const LAB_UP: &str = "\
Example:
  drctl lab up --detach

Exit codes:
  0  up (with --detach), or stopped on Ctrl-C
  1  the lab could not start (a port taken, PostgreSQL missing: the error says which)
  2  bad input: a flag";

pub const LAB_DOWN: &str = "\
Example:
  drctl lab down

Exit codes:
  0  stopped, or none was running
  1  the lab could not be stopped";

pub const LAB_POWER_OFF: &str = "\
Example:
  drctl lab power-off --zone lab-az1

Exit codes:
  0  powered off
  1  the lab did not answer
  2  bad input: an unknown zone or datastore";

pub const LAB_STATUS: &str = "\
Example:
  drctl lab status --output json

Exit codes:
  0  shown
  1  no lab answers at --dir";

pub const DRILL: &str = "\
Example:
  drctl drill chaos/lab-zone-outage.yaml --lab

Exit codes:
  0  the drill ran and met its objectives (see the report)
  1  failed at run time (the lab, a fault, the failover)
  2  bad input: the experiment, the topology or a flag
  3  the drill ran, but an objective was missed (RTO, RPO, detection)";

pub const BENCH: &str = "\
Example:
  drctl bench plan --entities 1000,10000 --runs 3

Exit codes:
  0  measured
  1  failed at run time
  2  bad input: a flag";

pub const BENCH_PLAN: &str = "\
Example:
  drctl bench plan --entities 1000,10000 --runs 3

Exit codes:
  0  measured
  2  bad input: a flag";

pub const BENCH_STATUS: &str = "\
Example:
  drctl bench status --datastores 100 --runs 3

Exit codes:
  0  measured
  1  failed at run time
  2  bad input: a flag";

pub const BENCH_ENGINE: &str = "\
Example:
  drctl bench engine --entities 1334 --parallel 8

Exit codes:
  0  measured
  1  failed at run time
  2  bad input: a flag";

pub const BENCH_DRILL: &str = "\
Example:
  drctl bench drill --runs 3

Exit codes:
  0  measured
  1  failed at run time (the lab could not start)
  2  bad input: a flag or the experiment";

pub const BENCH_SCHEDULER: &str = "\
Example:
  drctl bench scheduler --topologies 20

Exit codes:
  0  measured
  2  bad input: a flag";

pub const COMPLETIONS: &str = "\
Example:
  drctl completions bash > /etc/bash_completion.d/drctl

Exit codes:
  0  printed
  2  bad input: an unknown shell";

pub const MAN: &str = "\
Example:
  drctl man /usr/local/share/man/man1

Exit codes:
  0  written
  1  the folder could not be written
  2  bad input: a flag";

pub const KEYS: &str = "\
Example:
  drctl keys show

Exit codes:
  0  done
  1  failed at run time (a key file could not be read or written)
  2  bad input: a flag, or a malformed key";

pub const KEYS_SHOW: &str = "\
Example:
  drctl keys show

Exit codes:
  0  done
  1  failed at run time (a key file could not be read or written)
  2  bad input: a malformed key";

pub const KEYS_ROTATE: &str = "\
Example:
  drctl keys rotate

Exit codes:
  0  a new data key and a new audit key are current; the old ones are kept
  1  failed at run time (a key file could not be written)
  2  bad input: the data key comes from DRCTL_KEY (add a key there instead)";

pub const BENCH_CONNECTIONS: &str = "\
Example:
  drctl bench connections --idle 1000 --trickling 500

Exit codes:
  0  measured, every probe answered and the p99 is under 100 ms
  1  failed at run time
  2  bad input: a flag
  3  a probe failed or the p99 is 100 ms or more";

pub const BENCH_VALIDATE: &str = "\
Example:
  drctl bench validate --sizes 10000,30000,100000

Exit codes:
  0  measured, and the time per zone and entity at the largest size is at most 3 times the smallest's
  1  failed at run time
  2  bad input: a flag, or a size whose file would be over the loader's limit
  3  validation time grows faster than the size";

pub const BENCH_SUBSCRIBE: &str = "\
Example:
  drctl bench subscribe --networks 2100 --per-network 6

Exit codes:
  0  measured: the viewer's p99 under 1 s, every notification within 10 s, pending subscriptions within the cap
  1  failed at run time
  2  bad input: a flag
  3  the viewer's p99 was 1 s or more, a notification took 10 s or more, or the pending passed the cap";

pub const CUSTOMER_LINK: &str = "\
Example:
  drctl customer-link acme --ttl 7d --base-url https://status.example.com

Exit codes:
  0  the link was made (printed once), listed or revoked
  1  the state store failed
  2  bad input: an unknown customer or link id, a TTL over 90 days, a flag";

pub const READINESS: &str = "\
Example:
  drctl readiness -f .drctl/lab/drctl.yaml --output json

Exit codes:
  0  every zone and region scope is ready (no finding of severity error)
  1  failed at run time (the state store)
  2  bad input: the topology or a flag
  3  a scope is not ready: a declaration would be refused or a step would fail";

pub const BACKUPS: &str = "\
Example:
  drctl backups -f drctl.yaml --output json

Exit codes:
  0  every datastore with a backup meets its restore RPO target
  1  failed at run time (pgBackRest or the state store)
  2  bad input: the topology or a flag
  3  a backup RPO target is missed";

pub const BACKUP: &str = "\
Example:
  drctl backup orders-db --kind full -f drctl.yaml

Exit codes:
  0  the backup finished
  1  the backup failed (pgBackRest's reason is printed)
  2  bad input: an unknown datastore, one without a backup, a flag";

pub const RESTORE: &str = "\
Examples:
  drctl restore orders-db --to -15m --reason \"bad migration\" --dry-run -f drctl.yaml
  drctl restore orders-db --to 2026-12-06T10:00:00Z --replace --reason \"bad delete\" -f drctl.yaml
  (--replace asks to type the datastore's name; --yes skips the question. See docs/restore.md.)

Exit codes:
  0  restored (or, with --dry-run, the plan printed)
  1  the restore failed (`drctl resume ID` continues it), a check refused --replace
     (nothing changed), or it was not confirmed
  2  bad input: an unknown datastore, a point outside what the backups hold, a flag";

pub const CUSTOMER_LINK_LIST: &str = "\
Example:
  drctl customer-link list --output json

Exit codes:
  0  listed
  1  the state store failed
  2  bad input: a flag";

pub const CUSTOMER_LINK_REVOKE: &str = "\
Example:
  drctl customer-link revoke ID   (ID: see `drctl customer-link list`)

Exit codes:
  0  revoked: the link and its sessions stop working at once
  1  the state store failed
  2  bad input: an unknown link id";

pub const BENCH_READINESS: &str = "\
Example:
  drctl bench readiness

Exit codes:
  0  measured
  1  failed at run time
  2  bad input: a flag";

pub const ERASE: &str = "\
Example:
  drctl erase cust-4711 --reason \"request #1234\" --wait 2m -f drctl.yaml

Exit codes:
  0  erased and verified on every copy
  1  failed at run time (the state store, the audit log), or not confirmed
  2  bad input: no `erasure:` section, an empty subject or reason, a flag
  3  recorded and erased, but a copy is not verified within --wait (the controller goes on)";

pub const ERASURES: &str = "\
Example:
  drctl erasures -f drctl.yaml --output json

Exit codes:
  0  no request is overdue
  1  failed at run time
  2  bad input: the topology or a flag
  3  a request is overdue: a copy was not verified clean by its deadline";

pub const BENCH_ERASURE: &str = "\
Example:
  drctl bench erasure --subjects 10000 -f drctl.yaml

Exit codes:
  0  measured
  1  failed at run time (PostgreSQL or S3 does not answer, a version left in a bucket)
  2  bad input: the topology has no PostgreSQL datastore, a bucket is not versioned, a flag

With an S3 datastore in the topology, each subject also gets objects of two
versions each under drctl-bench-erasure/bench-N/ in every bucket, erased and
verified in a pass of its own; the prefix is emptied afterwards.";
