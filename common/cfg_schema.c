/* The key table: every configuration key pgwarden reads, in the order the
 * reference documents them. Adding a key here makes it parsed, defaulted,
 * freed, diffed and documented; docs/configuration.md is this table printed
 * by cfg_print_reference (a unit test fails when the two differ). */
#include <stddef.h>
#include <string.h>

#include "common/cfg_internal.h"

#define C(f) BASE_CFG, offsetof(struct cfg, f)
#define D(f) BASE_DCS, offsetof(struct cfg_dcs, f)

#define SECTION(p, d) {.path = (p), .type = KT_SECTION, .doc = (d)}

#define SSLMODES "disable|allow|prefer|require|verify-ca|verify-full"

/* The ten keys of one postgresql.authentication.<role> section; `user` is
 * the default user name, `user_doc` documents a computed one instead. */
#define PGAUTH(role, user, user_doc, env_user, env_pass)                                         \
    SECTION("postgresql.authentication." #role, NULL),                                           \
    {"postgresql.authentication." #role ".username", NULL, KT_STR,                               \
     C(postgresql.role.username), 0, (user), (user_doc), CH_RESTART, 0, (env_user), 0, 0, NULL,  \
     "User name pgwarden connects as for this role."},                                           \
    {"postgresql.authentication." #role ".password", NULL, KT_STR,                               \
     C(postgresql.role.password), 0, NULL, "none", CH_RESTART, KF_SECRET, (env_pass), 0, 0,      \
     NULL, "Its password (secret: never logged). Without one, pgwarden relies on pg_hba.conf "   \
     "(peer, cert, trust) or on the pgpass file."},                                               \
    {"postgresql.authentication." #role ".sslmode", NULL, KT_CHOICE,                             \
     C(postgresql.role.sslmode), 0, NULL, "libpq's", CH_RESTART, 0, NULL, 0, 0, SSLMODES,        \
     "libpq sslmode of these connections."},                                                      \
    {"postgresql.authentication." #role ".sslcert", NULL, KT_STR, C(postgresql.role.sslcert),    \
     0, NULL, "none", CH_RESTART, KF_PATH, NULL, 0, 0, NULL, "Client certificate file."},          \
    {"postgresql.authentication." #role ".sslkey", NULL, KT_STR, C(postgresql.role.sslkey), 0,   \
     NULL, "none", CH_RESTART, KF_PATH, NULL, 0, 0, NULL, "Client key file."},                     \
    {"postgresql.authentication." #role ".sslrootcert", NULL, KT_STR,                            \
     C(postgresql.role.sslrootcert), 0, NULL, "none", CH_RESTART, KF_PATH, NULL, 0, 0, NULL,       \
     "CA certificates that must have signed the server's certificate."},                         \
    {"postgresql.authentication." #role ".sslcrl", NULL, KT_STR, C(postgresql.role.sslcrl), 0,   \
     NULL, "none", CH_RESTART, KF_PATH, NULL, 0, 0, NULL, "Certificate revocation list file."},    \
    {"postgresql.authentication." #role ".sslpassword", NULL, KT_STR,                            \
     C(postgresql.role.sslpassword), 0, NULL, "none", CH_RESTART, KF_SECRET, NULL, 0, 0, NULL,   \
     "Password of sslkey (secret: never logged)."},                                              \
    {"postgresql.authentication." #role ".channel_binding", NULL, KT_CHOICE,                     \
     C(postgresql.role.channel_binding), 0, NULL, "libpq's", CH_RESTART, 0, NULL, 0, 0,          \
     "disable|prefer|require", "libpq channel_binding."},                                         \
    {"postgresql.authentication." #role ".gssencmode", NULL, KT_CHOICE,                          \
     C(postgresql.role.gssencmode), 0, NULL, "libpq's", CH_RESTART, 0, NULL, 0, 0,               \
     "disable|prefer|require", "libpq gssencmode."}

const struct cfg_key cfg__keys[] = {
    /* ---- top level ---- */
    {"scope", NULL, KT_IDENT, C(scope), 0, NULL, NULL, CH_RESTART, KF_REQUIRED, "PGWARDEN_SCOPE",
     0, 0, NULL,
     "Name of the cluster; every node of a cluster has the same scope. Also PostgreSQL's "
     "cluster_name."},
    {"name", NULL, KT_IDENT, C(name), 0, NULL, NULL, CH_RESTART, KF_REQUIRED, "PGWARDEN_NAME", 0,
     0, NULL,
     "Name of this node, unique in the cluster. It becomes a replication slot name and part of "
     "file names, hence the restricted characters."},
    {"witness", NULL, KT_BOOL, C(witness), 0, "false", NULL, CH_RESTART, 0, NULL, 0, 0, NULL,
     "A witness votes in Raft but runs no PostgreSQL. A node without a postgresql section is "
     "a witness too."},

    /* ---- restapi ---- */
    SECTION("restapi", "The REST API: Patroni's health endpoints (`/primary`, `/replica`, ...) "
                       "for load balancers, and the endpoints `pgwarden ctl` uses."),
    {"restapi.listen", NULL, KT_HOSTPORT, C(restapi.listen), 0, "0.0.0.0:8008", NULL, CH_RESTART,
     0, "PGWARDEN_RESTAPI_LISTEN", 0, 0, NULL,
     "Address the REST API listens on: an IPv4 address or `[IPv6]`, not a host name (nothing "
     "is resolved; `pgwarden validate` and `run` refuse a name)."},
    {"restapi.connect_address", NULL, KT_HOSTPORT, C(restapi.connect_address), 0, NULL,
     "listen host (when it is a wildcard: the host of raft.self_addr), listen port", CH_RESTART,
     0, "PGWARDEN_RESTAPI_CONNECT_ADDRESS", 0, 0, NULL,
     "Address other nodes and clients use to reach this node's REST API (published as "
     "`api_url`)."},
    SECTION("restapi.authentication", NULL),
    {"restapi.authentication.username", NULL, KT_STR, C(restapi.auth_username), 0, NULL, "none",
     CH_RELOAD, 0, "PGWARDEN_RESTAPI_USERNAME", 0, 0, NULL,
     "Basic-auth user required by the write endpoints (switchover, restart, PATCH /config, ...). "
     "Health and monitoring GETs never need it. Set together with the password."},
    {"restapi.authentication.password", NULL, KT_STR, C(restapi.auth_password), 0, NULL, "none",
     CH_RELOAD, KF_SECRET, "PGWARDEN_RESTAPI_PASSWORD", 0, 0, NULL,
     "Its password (secret: never logged)."},
    {"restapi.certfile", NULL, KT_STR, C(restapi.certfile), 0, NULL, "none", CH_RELOAD, KF_PATH,
     NULL, 0, 0, NULL,
     "Server certificate (PEM, may hold the chain); setting it (with keyfile) turns on HTTPS, "
     "TLS 1.2 and newer, and members then publish `https://` API URLs. The files are read "
     "again on SIGHUP (a renewed certificate applies to new connections); turning HTTPS on or "
     "off needs a restart. With verify_client, the node also presents this certificate to "
     "the other members, so it needs both serverAuth and clientAuth key usages."},
    {"restapi.keyfile", NULL, KT_STR, C(restapi.keyfile), 0, NULL, "none", CH_RELOAD, KF_PATH,
     NULL, 0, 0, NULL, "Private key of certfile (PEM, not passphrase-protected)."},
    {"restapi.cafile", NULL, KT_STR, C(restapi.cafile), 0, NULL, "none", CH_RELOAD, KF_PATH, NULL,
     0, 0, NULL,
     "CA certificates that verify client certificates, and the other members' server "
     "certificates when this node calls their API."},
    {"restapi.verify_client", NULL, KT_CHOICE, C(restapi.verify_client), 0, "none", NULL,
     CH_RELOAD, 0, NULL, 0, 0, "none|optional|required",
     "Client certificates (needs certfile and cafile): `optional` asks for one and requires it "
     "for write endpoints only (403 otherwise), `required` refuses the TLS handshake without "
     "one. A certificate that does not verify against cafile is refused in both."},
    {"restapi.allowlist", NULL, KT_STRLIST, C(restapi.allowlist), 0, NULL, "empty (everyone)",
     CH_RESTART, 0, NULL, 0, 0, NULL,
     "IP addresses and CIDR ranges allowed to call the write endpoints (the members' own "
     "addresses always are). A host name is refused: Patroni resolves it once at start, pgwarden "
     "does not resolve names here."},
    {"restapi.request_timeout", NULL, KT_DURATION, C(restapi.request_timeout_ms), 0, "5", NULL,
     CH_RESTART, KF_MIN | KF_MAX, NULL, 100, 3600000, NULL,
     "Deadline to read one request; a slow or stuck client is disconnected after it."},
    {"restapi.max_connections", NULL, KT_UINT, C(restapi.max_connections), 0, "1024", NULL,
     CH_RESTART, KF_MIN | KF_MAX, NULL, 1, 1000000, NULL,
     "Open connections beyond this are refused, so a flood of probes cannot exhaust the "
     "process."},
    {"restapi.health_listen", NULL, KT_HOSTPORT, C(restapi.health_listen), 0, NULL, "none",
     CH_RESTART, 0, "PGWARDEN_RESTAPI_HEALTH_LISTEN", 0, 0, NULL,
     "A second listener, always plain HTTP, that serves only the health checks (GET, HEAD "
     "and OPTIONS of `/`, `/primary`, `/replica`, `/read-only`, `/sync`, `/async`, `/health`, "
     "`/liveness`, `/readiness`, ...): for load-balancer probes that cannot speak TLS (GCP "
     "health checks) while the API itself uses HTTPS."},

    /* ---- ctl ---- */
    SECTION("ctl", "Settings of `pgwarden ctl` as a client of the REST API."),
    SECTION("ctl.authentication", NULL),
    {"ctl.authentication.username", NULL, KT_STR, C(ctl.auth_username), 0, NULL,
     "restapi.authentication.username", CH_CLIENT, 0, "PGWARDEN_CTL_USERNAME", 0, 0, NULL,
     "User `pgwarden ctl` sends for write requests."},
    {"ctl.authentication.password", NULL, KT_STR, C(ctl.auth_password), 0, NULL,
     "restapi.authentication.password", CH_CLIENT, KF_SECRET, "PGWARDEN_CTL_PASSWORD", 0, 0, NULL,
     "Its password (secret: never logged)."},
    {"ctl.cacert", NULL, KT_STR, C(ctl.cacert), 0, NULL, "restapi.cafile", CH_CLIENT, KF_PATH,
     NULL, 0, 0, NULL, "CA certificates to verify the REST API's certificate."},
    {"ctl.certfile", NULL, KT_STR, C(ctl.certfile), 0, NULL, "none", CH_CLIENT, KF_PATH, NULL, 0, 0,
     NULL, "Client certificate `pgwarden ctl` presents."},
    {"ctl.keyfile", NULL, KT_STR, C(ctl.keyfile), 0, NULL, "none", CH_CLIENT, KF_PATH, NULL, 0, 0,
     NULL, "Private key of ctl.certfile."},
    {"ctl.insecure", NULL, KT_BOOL, C(ctl.insecure), 0, "false", NULL, CH_CLIENT, 0, NULL, 0, 0,
     NULL, "Do not verify the REST API's certificate."},

    /* ---- raft ---- */
    SECTION("raft",
            "pgwarden's own consensus: the pgwarden nodes form a Raft group, so there is no "
            "etcd, Consul, ZooKeeper or Kubernetes to run. A Patroni configuration's `etcd:` "
            "(or `etcd3`, `consul`, `zookeeper`, `kubernetes`, `exhibitor`) section is refused: "
            "replace it with this one."),
    {"raft.self_addr", NULL, KT_IPV4, C(raft.self_addr), 0, NULL, NULL, CH_RESTART, KF_REQUIRED,
     "PGWARDEN_RAFT_SELF_ADDR", 0, 0, NULL,
     "Raft address of this node, `a.b.c.d:port`. IPv4 only: libraft accepts no host names and "
     "no IPv6."},
    {"raft.partner_addrs", NULL, KT_IPV4LIST, C(raft.partner_addrs), 0, NULL, "empty", CH_RESTART,
     0, "PGWARDEN_RAFT_PARTNER_ADDRS", 0, 0, NULL,
     "Raft addresses of the OTHER nodes (not this one). The environment variable takes them "
     "comma-separated."},
    {"raft.data_dir", NULL, KT_STR, C(raft.data_dir), 0, NULL, NULL, CH_RESTART,
     KF_REQUIRED | KF_PATH, "PGWARDEN_RAFT_DATA_DIR", 0, 0, NULL,
     "Directory of the Raft log and snapshots, owned by pgwarden. Losing it means the node must "
     "rejoin under a new identity."},
    {"raft.password", NULL, KT_STR, C(raft.password), 0, NULL, "none", CH_RESTART, KF_SECRET,
     "PGWARDEN_RAFT_PASSWORD", 0, 0, NULL,
     "Shared secret of the Raft transport (secret: never logged). When set, every connection "
     "on the Raft port proves it with an HMAC-SHA256 challenge/response in both directions "
     "before libraft sees a byte; all nodes need the same value (a mismatch is logged with the "
     "peer's address). Give it through the environment to keep it out of the file."},
    {"raft.certfile", NULL, KT_STR, C(raft.certfile), 0, NULL, "none", CH_RESTART, KF_PATH, NULL,
     0, 0, NULL,
     "Certificate (PEM, may hold the chain) this node presents on the Raft port. Setting "
     "raft.certfile, raft.keyfile and raft.cafile (all three, on every node) puts every Raft "
     "connection and probe inside mutually authenticated TLS (1.2 at least, 1.3 preferred): "
     "each side must present a certificate signed by raft.cafile. Any certificate that CA "
     "signed is accepted as a member, whatever its name: use a CA dedicated to the cluster. "
     "The certificate must allow both TLS client and server use (no extendedKeyUsage, or "
     "both serverAuth and clientAuth). SIGHUP re-reads the three files for new connections; "
     "other paths need a restart."},
    {"raft.keyfile", NULL, KT_STR, C(raft.keyfile), 0, NULL, "none", CH_RESTART, KF_PATH, NULL,
     0, 0, NULL, "Private key of raft.certfile (PEM, without a passphrase)."},
    {"raft.cafile", NULL, KT_STR, C(raft.cafile), 0, NULL, "none", CH_RESTART, KF_PATH, NULL, 0,
     0, NULL,
     "CA certificates (PEM) that must have signed the peers' Raft certificates, and this "
     "node's own."},

    /* ---- bootstrap ---- */
    SECTION("bootstrap",
            "Used once, by the node that creates the cluster. `bootstrap.dcs` becomes the "
            "cluster-wide dynamic configuration; later edits of it in the file are ignored: "
            "change it with `pgwarden ctl edit-config` (PATCH /config)."),
    SECTION("bootstrap.dcs", NULL),
    {"bootstrap.dcs.ttl", NULL, KT_DURATION, D(ttl_ms), 0, "2", NULL, CH_CLUSTER, KF_MIN | KF_MAX,
     NULL, 1000, 3600000, NULL,
     "Length of the primary's lease: a primary that cannot renew it through a Raft majority "
     "demotes itself, and another node is promoted only after it expired."},
    {"bootstrap.dcs.loop_wait", NULL, KT_DURATION, D(loop_wait_ms), 0, "0.5", NULL, CH_CLUSTER,
     KF_MIN | KF_MAX, NULL, 100, 3600000, NULL, "Period of the HA loop and of lease renewals."},
    {"bootstrap.dcs.retry_timeout", NULL, KT_DURATION, D(retry_timeout_ms), 0, "0.75", NULL,
     CH_CLUSTER, KF_MIN | KF_MAX, NULL, 200, 3600000, NULL,
     "Deadline of one Raft or PostgreSQL operation. loop_wait + 2 * retry_timeout must not "
     "exceed ttl."},
    {"bootstrap.dcs.maximum_lag_on_failover", NULL, KT_SIZE, D(maximum_lag_on_failover), 0,
     "1048576", NULL, CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "A replica lagging more than this many bytes is never promoted by a failover."},
    {"bootstrap.dcs.maximum_lag_on_syncnode", NULL, KT_LAG, D(maximum_lag_on_syncnode), 0, "-1",
     NULL, CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "A synchronous standby lagging more than this many bytes is replaced; 0 or less (-1, the default) turns it off, as in Patroni."},
    {"bootstrap.dcs.primary_start_timeout", "master_start_timeout", KT_DURATION,
     D(primary_start_timeout_ms), 0, "300", NULL, CH_CLUSTER, KF_LEGACY, NULL, 0, 0, NULL,
     "How long a crashed primary may take to restart in place before a failover; 0 fails over "
     "at once."},
    {"bootstrap.dcs.primary_stop_timeout", "master_stop_timeout", KT_DURATION,
     D(primary_stop_timeout_ms), 0, "0", NULL, CH_CLUSTER, KF_LEGACY, NULL, 0, 0, NULL,
     "In synchronous mode, how long a stopping primary may take before it is killed; 0 waits "
     "without limit."},
    {"bootstrap.dcs.synchronous_mode", NULL, KT_SYNCMODE, D(synchronous_mode), 0, "off", NULL,
     CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "`on`: commits wait for a synchronous standby and only it may be promoted; `quorum`: "
     "quorum commit. YAML booleans are accepted."},
    {"bootstrap.dcs.synchronous_mode_strict", NULL, KT_BOOL, D(synchronous_mode_strict), 0,
     "false", NULL, CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "Keep commits waiting when no synchronous standby is left, rather than going "
     "asynchronous."},
    {"bootstrap.dcs.synchronous_node_count", NULL, KT_UINT, D(synchronous_node_count), 0, "1",
     NULL, CH_CLUSTER, KF_MIN | KF_MAX, NULL, 1, 1000, NULL, "Number of synchronous standbys."},
    {"bootstrap.dcs.member_slots_ttl", NULL, KT_DURATION, D(member_slots_ttl_ms), 0, "1800", NULL,
     CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "How long the primary keeps the replication slot of a member that stopped reporting (its "
     "pgwarden is down or cut off), counted from when the member was last seen plus ttl, so it "
     "can catch up; WAL is retained meanwhile. 0 drops the slot once the member counts as gone."},
    {"bootstrap.dcs.slots", NULL, KT_SLOTS, D(slots), 0, NULL, "none", CH_CLUSTER, 0, NULL, 0, 0,
     NULL,
     "Permanent replication slots: `name: {type: physical}` or `name: {type: logical, database: "
     "db, plugin: pgoutput}`. Created and kept on the primary. Physical ones are created on "
     "replicas too (without reserving WAL there) so they exist after a failover; logical ones "
     "live on the primary only and are created anew on a new primary (PostgreSQL 15 cannot keep "
     "them in step on a standby). Logical slots need wal_level logical."},
    {"bootstrap.dcs.ignore_slots", NULL, KT_SLOTMATCH, D(ignore_slots), 0, NULL, "none",
     CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "Slots pgwarden never drops, each entry matching by the fields it gives (`{name: x}`, "
     "`{type: logical, plugin: wal2json}`). Any other slot that belongs to no member and is not "
     "permanent is dropped."},
    {"bootstrap.dcs.check_timeline", NULL, KT_BOOL, D(check_timeline), 0, "false", NULL,
     CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "Promote only a replica on the highest timeline."},
    SECTION("bootstrap.dcs.standby_cluster",
            "Makes this a standby cluster: the lease holder is a standby leader that replicates "
            "from a remote primary (`host`/`port`, and/or `restore_command`), the other members "
            "cascade from it, `/standby-leader` answers 200 there and `/primary` nowhere. "
            "`pgwarden ctl promote-cluster` removes the section (the standby leader is promoted), "
            "`demote-cluster` adds it (the primary becomes a standby leader). The remote slot "
            "is not created for you."),
    {"bootstrap.dcs.standby_cluster.host", NULL, KT_STR, D(standby.host), 0, NULL, "none",
     CH_CLUSTER, 0, NULL, 0, 0, NULL, "Host of the remote primary."},
    {"bootstrap.dcs.standby_cluster.port", NULL, KT_UINT, D(standby.port), 0, "5432", NULL,
     CH_CLUSTER, KF_MIN | KF_MAX, NULL, 1, 65535, NULL, "Its port."},
    {"bootstrap.dcs.standby_cluster.primary_slot_name", NULL, KT_STR, D(standby.primary_slot_name),
     0, NULL, "none", CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "Replication slot on the remote primary used by the standby leader (create it there)."},
    {"bootstrap.dcs.standby_cluster.restore_command", NULL, KT_STR, D(standby.restore_command), 0,
     NULL, "none", CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "restore_command of the standby leader (WAL from an archive)."},
    {"bootstrap.dcs.standby_cluster.archive_cleanup_command", NULL, KT_STR,
     D(standby.archive_cleanup_command), 0, NULL, "none", CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "archive_cleanup_command of the standby leader."},
    {"bootstrap.dcs.standby_cluster.recovery_min_apply_delay", NULL, KT_STR,
     D(standby.recovery_min_apply_delay), 0, NULL, "none", CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "recovery_min_apply_delay of the standby leader (a delayed standby cluster)."},
    SECTION("bootstrap.dcs.postgresql", NULL),
    {"bootstrap.dcs.postgresql.use_pg_rewind", NULL, KT_BOOL, D(use_pg_rewind), 0, "true", NULL,
     CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "Rejoin a former primary with pg_rewind (pgwarden's default; Patroni's is false). "
     "postgresql.use_pg_rewind, when given, overrides it on that node."},
    {"bootstrap.dcs.postgresql.remove_data_directory_on_rewind_failure", NULL, KT_BOOL,
     D(remove_data_directory_on_rewind_failure), 0, "false", NULL, CH_CLUSTER, KF_OMIT_FALSE,
     NULL, 0, 0,
     NULL, "Cluster-wide default of postgresql.remove_data_directory_on_rewind_failure (a "
     "node's own value wins when given), as Patroni reads it."},
    {"bootstrap.dcs.postgresql.remove_data_directory_on_diverged_timelines", NULL, KT_BOOL,
     D(remove_data_directory_on_diverged_timelines), 0, "false", NULL, CH_CLUSTER,
     KF_OMIT_FALSE, NULL, 0, 0,
     NULL, "Cluster-wide default of postgresql.remove_data_directory_on_diverged_timelines (a "
     "node's own value wins when given), as Patroni reads it."},
    {"bootstrap.dcs.postgresql.use_slots", NULL, KT_BOOL, D(use_slots), 0, "true", NULL,
     CH_CLUSTER, 0, NULL, 0, 0, NULL, "One physical replication slot per replica."},
    {"bootstrap.dcs.postgresql.parameters", NULL, KT_PARAMS, D(pg_parameters), 0, NULL, "empty",
     CH_CLUSTER, 0, NULL, 0, 0, NULL,
     "Cluster-wide PostgreSQL settings (`max_connections: 200`). A node's own "
     "postgresql.parameters win over them, as in Patroni, except for the settings that must be "
     "equal on all nodes (max_connections, max_locks_per_transaction, max_worker_processes, "
     "max_prepared_transactions, max_wal_senders, max_replication_slots, wal_level, "
     "track_commit_timestamp, wal_log_hints), which are taken from here only."},
    {"bootstrap.dcs.postgresql.pg_hba", NULL, KT_STRLIST, D(pg_hba), 0, NULL, "empty",
     CH_CLUSTER, 0, NULL, 0, 0, NULL, "Cluster-wide pg_hba.conf lines."},
    {"bootstrap.initdb", NULL, KT_OPTIONS, C(bootstrap.initdb), 0, NULL, "empty", CH_BOOTSTRAP, 0,
     NULL, 0, 0, "pgdata|nosync|pwfile|sync-only|version|username",
     "initdb options: `- data-checksums`, `- encoding: UTF8`. pgdata, nosync, pwfile, "
     "sync-only, version and username are set by pgwarden and refused here."},
    {"bootstrap.pg_hba", NULL, KT_STRLIST, C(bootstrap.pg_hba), 0, NULL, "empty", CH_BOOTSTRAP, 0,
     NULL, 0, 0, NULL, "pg_hba.conf lines used while the cluster is being created."},
    {"bootstrap.method", NULL, KT_STR, C(bootstrap.method), 0, "initdb", NULL, CH_BOOTSTRAP, 0,
     NULL, 0, 0, NULL,
     "How the first node creates its data directory: `initdb`, or the name of a section "
     "`bootstrap.<name>` whose command creates it (a restore from a backup)."},
    {"bootstrap.users", NULL, KT_USERS, C(bootstrap.users), 0, NULL, "none", CH_BOOTSTRAP,
     KF_SECRET, NULL, 0, 0, NULL,
     "Roles created once the new cluster's own bootstrap (initdb or a custom method) and "
     "post_bootstrap succeeded, as in Patroni 3: `alice: {password: ..., options: [createrole, "
     "createdb]}`. A missing role is created, an existing one altered; LOGIN is added unless "
     "LOGIN or NOLOGIN is given. options accepts PostgreSQL role attributes only (any case): "
     "[NO]SUPERUSER, [NO]CREATEDB, [NO]CREATEROLE, [NO]INHERIT, [NO]LOGIN, [NO]REPLICATION, "
     "[NO]BYPASSRLS, `CONNECTION LIMIT <integer>`, `VALID UNTIL '<timestamp>'`; anything else "
     "is refused at load (Patroni pastes options into its SQL as given). The passwords are "
     "secrets: never logged, nor written to PostgreSQL's log. A user named like the superuser, "
     "replication or rewind user is skipped with a warning, as Patroni does. Nothing is "
     "created on a replica, nor when an existing data directory is adopted."},
    {"bootstrap.post_bootstrap", "post_init", KT_STR, C(bootstrap.post_bootstrap), 0, NULL,
     "none", CH_BOOTSTRAP, 0, NULL, 0, 0, NULL,
     "Command run once the new cluster is up, with a superuser connection string as its "
     "argument (no password: PGPASSFILE names pgwarden's password file). A non-zero exit "
     "fails the bootstrap: the data directory is moved aside and the node does not found the "
     "cluster again until pgwarden restarts."},

    /* ---- postgresql ---- */
    SECTION("postgresql",
            "The local PostgreSQL instance. A node without this section (or with "
            "`witness: true`) is a witness: a Raft voter running no PostgreSQL."),
    {"postgresql.listen", NULL, KT_PGLISTEN, C(postgresql.listen), 0, NULL, NULL, CH_RESTART,
     KF_REQUIRED_PG, "PGWARDEN_POSTGRESQL_LISTEN", 0, 0, NULL,
     "listen_addresses and port of PostgreSQL: `host:port`, or Patroni's `host1,host2:port` "
     "(the port goes on the last one; `*` listens everywhere)."},
    {"postgresql.connect_address", NULL, KT_HOSTPORT, C(postgresql.connect_address), 0, NULL,
     "the listen host (the first of a list), or the host of raft.self_addr when the listen "
     "host is a wildcard or a list containing it; the listen port",
     CH_RESTART, 0, "PGWARDEN_POSTGRESQL_CONNECT_ADDRESS", 0, 0, NULL,
     "Address other nodes replicate from and clients connect to (published as `conn_url`)."},
    {"postgresql.data_dir", NULL, KT_STR, C(postgresql.data_dir), 0, NULL, NULL, CH_RESTART,
     KF_REQUIRED_PG | KF_PATH, "PGWARDEN_POSTGRESQL_DATA_DIR", 0, 0, NULL,
     "PostgreSQL's data directory (PGDATA)."},
    {"postgresql.bin_dir", NULL, KT_STR, C(postgresql.bin_dir), 0, "/usr/lib/postgresql/15/bin",
     NULL, CH_RESTART, KF_PATH, "PGWARDEN_POSTGRESQL_BIN_DIR", 0, 0, NULL,
     "Directory of pg_ctl, initdb, pg_basebackup, pg_rewind, pg_controldata."},
    {"postgresql.config_dir", NULL, KT_STR, C(postgresql.config_dir), 0, NULL,
     "postgresql.data_dir", CH_RESTART, KF_PATH, NULL, 0, 0, NULL,
     "Directory of postgresql.conf (with postgresql.base.conf, the operator's settings it "
     "includes), pg_hba.conf and pg_ident.conf; Debian's is `/etc/postgresql/<version>/<cluster>`. "
     "When it is not data_dir, PostgreSQL is started with `--config-file=<config_dir>/"
     "postgresql.conf` (single-user crash recovery and pg_rewind 15+ too) and the managed file sets "
     "hba_file and ident_file to the files here, unless postgresql.parameters name others, as "
     "Patroni does. A file missing here is copied from data_dir, where PostgreSQL read it until "
     "then (its postgresql.conf becomes postgresql.base.conf); a pg_ident.conf found nowhere is "
     "created empty."},
    {"postgresql.pgpass", NULL, KT_STR, C(postgresql.pgpass), 0, NULL, "`<raft.data_dir>/pgpass`",
     CH_RESTART, KF_PATH, "PGWARDEN_POSTGRESQL_PGPASS", 0, 0, NULL,
     "Password file pgwarden writes for pg_basebackup and pg_rewind (in a directory pgwarden "
     "owns)."},
    SECTION("postgresql.authentication", NULL),
    PGAUTH(superuser, "postgres", NULL, "PGWARDEN_SUPERUSER_USERNAME",
           "PGWARDEN_SUPERUSER_PASSWORD"),
    PGAUTH(replication, "replicator", NULL, "PGWARDEN_REPLICATION_USERNAME",
           "PGWARDEN_REPLICATION_PASSWORD"),
    /* Patroni's rewind_credentials: the rewind section, else the superuser's */
    PGAUTH(rewind, NULL,
           "none: without a rewind section pg_rewind connects as the superuser, with its "
           "password and ssl settings, and no rewind role is created (as in Patroni); a rewind "
           "section needs a username",
           "PGWARDEN_REWIND_USERNAME", "PGWARDEN_REWIND_PASSWORD"),
    {"postgresql.parameters", NULL, KT_PARAMS, C(postgresql.parameters), 0, NULL, "empty",
     CH_RELOAD, 0, NULL, 0, 0, NULL,
     "Local PostgreSQL settings, over the cluster-wide ones as in Patroni; values may be strings, "
     "numbers or booleans (written as on/off). listen_addresses and port come from "
     "postgresql.listen and are refused here."},
    {"postgresql.pg_hba", NULL, KT_STRLIST, C(postgresql.pg_hba), 0, NULL, "empty", CH_RELOAD, 0,
     NULL, 0, 0, NULL, "pg_hba.conf lines, in order. With none here or cluster-wide, a pg_hba.conf "
     "pgwarden did not write is left as it is, as in Patroni; pgwarden writes its default (peer "
     "locally, scram-sha-256 over TCP, replication for the replication user) only into a data "
     "directory it creates, or over a file of its own."},
    {"postgresql.recovery_conf", NULL, KT_PARAMS, C(postgresql.recovery_conf), 0, NULL, "empty",
     CH_RESTART, 0, NULL, 0, 0, NULL,
     "Extra recovery settings of a replica (restore_command, recovery_min_apply_delay, ...)."},
    {"postgresql.create_replica_methods", "create_replica_method", KT_STRLIST,
     C(postgresql.create_replica_methods),
     0, "[basebackup]", NULL, CH_RESTART, 0, NULL, 0, 0, NULL,
     "How a replica without data is created, in order of preference: `basebackup` (built in) "
     "or the name of a section `postgresql.<name>` running a command (a restore from a backup "
     "tool); when one fails the next is tried. See the custom methods below. Patroni's "
     "singular `create_replica_method` is read the same way."},
    {"postgresql.basebackup", NULL, KT_OPTIONS, C(postgresql.basebackup), 0, NULL, "empty",
     CH_RESTART, 0, NULL, 0, 0,
     "pgdata|format|wal-method|xlog-method|gzip|version|dbname|host|port|username|password|"
     "compress",
     "pg_basebackup long options, as a list (`- checkpoint: fast`) or a mapping "
     "(`max-rate: 100M`). Options pgwarden sets itself are refused."},
    {"postgresql.use_pg_rewind", NULL, KT_BOOL, C(postgresql.use_pg_rewind),
     offsetof(struct cfg, postgresql.use_pg_rewind_set), "true", NULL, CH_RESTART, KF_SETFLAG,
     NULL, 0, 0, NULL,
     "This node's choice; when given it overrides bootstrap.dcs.postgresql.use_pg_rewind."},
    {"postgresql.use_unix_socket", NULL, KT_BOOL, C(postgresql.use_unix_socket), 0, "false", NULL,
     CH_RESTART, 0, NULL, 0, 0, NULL,
     "pgwarden's own connections to the local PostgreSQL (monitoring, the bootstrap's roles, "
     "post_bootstrap, slots) go through the unix socket in the first absolute directory of "
     "unix_socket_directories (none set: libpq's default directory) instead of TCP to the first "
     "listen address. With peer authentication for `local` lines the superuser needs no "
     "password. Connections to other members always use TCP."},
    {"postgresql.use_unix_socket_repl", NULL, KT_BOOL, C(postgresql.use_unix_socket_repl), 0,
     "false", NULL, CH_RESTART, 0, NULL, 0, 0, NULL,
     "Refused when true: Patroni uses it for its replication connections to the local "
     "PostgreSQL, and pgwarden makes none (a replica streams from another member, over TCP)."},
    {"postgresql.remove_data_directory_on_rewind_failure", NULL, KT_BOOL,
     C(postgresql.remove_data_directory_on_rewind_failure),
     offsetof(struct cfg, postgresql.remove_on_rewind_failure_set), "false", NULL, CH_RESTART,
     KF_SETFLAG,
     NULL, 0, 0, NULL, "When pg_rewind fails, wipe the data directory and clone again."},
    {"postgresql.remove_data_directory_on_diverged_timelines", NULL, KT_BOOL,
     C(postgresql.remove_data_directory_on_diverged_timelines),
     offsetof(struct cfg, postgresql.remove_on_diverged_set), "false", NULL, CH_RESTART,
     KF_SETFLAG,
     NULL, 0, 0, NULL,
     "When timelines diverged and pg_rewind is off, wipe the data directory and clone again."},
    {"postgresql.pg_ctl_timeout", NULL, KT_DURATION, C(postgresql.pg_ctl_timeout_ms), 0, "60",
     NULL, CH_RESTART, KF_MIN, NULL, 1000, 0, NULL,
     "Deadline of pg_ctl start, stop, restart and promote."},
    SECTION("postgresql.callbacks", NULL),
    {"postgresql.callbacks.on_start", NULL, KT_STR, C(postgresql.callbacks.on_start), 0, NULL,
     "none", CH_RELOAD, 0, NULL, 0, 0, NULL,
     "Command run as `cmd on_start <role> <scope>` after PostgreSQL started."},
    {"postgresql.callbacks.on_stop", NULL, KT_STR, C(postgresql.callbacks.on_stop), 0, NULL,
     "none", CH_RELOAD, 0, NULL, 0, 0, NULL, "Run after PostgreSQL stopped."},
    {"postgresql.callbacks.on_restart", NULL, KT_STR, C(postgresql.callbacks.on_restart), 0, NULL,
     "none", CH_RELOAD, 0, NULL, 0, 0, NULL, "Run after a restart."},
    {"postgresql.callbacks.on_reload", NULL, KT_STR, C(postgresql.callbacks.on_reload), 0, NULL,
     "none", CH_RELOAD, 0, NULL, 0, 0, NULL, "Run after a configuration reload."},
    {"postgresql.callbacks.on_role_change", NULL, KT_STR, C(postgresql.callbacks.on_role_change),
     0, NULL, "none", CH_RELOAD, 0, NULL, 0, 0, NULL,
     "Run after a promotion or demotion."},
    {"postgresql.pre_promote", NULL, KT_STR, C(postgresql.pre_promote), 0, NULL, "none",
     CH_RESTART, 0, NULL, 0, 0, NULL,
     "Fencing hook run before a promotion; a non-zero exit cancels it."},
    {"postgresql.before_stop", NULL, KT_STR, C(postgresql.before_stop), 0, NULL, "none",
     CH_RESTART, 0, NULL, 0, 0, NULL,
     "Command run before PostgreSQL is stopped; its exit status is ignored."},

    /* ---- tags ---- */
    SECTION("tags",
            "How this node may be used. Any other key under tags is kept as a custom tag "
            "(its value as text) and can be matched by health checks (`?tag_key=value`)."),
    {"tags.nofailover", NULL, KT_BOOL, C(tags.nofailover), 0, "false", NULL, CH_RELOAD, 0, NULL, 0,
     0, NULL, "Never promote this node."},
    {"tags.failover_priority", NULL, KT_INT, C(tags.failover_priority), 0, "1", NULL, CH_RELOAD,
     0, NULL, 0, 0, NULL,
     "Preference among equally up-to-date candidates; 0 or less behaves like nofailover."},
    {"tags.noloadbalance", NULL, KT_BOOL, C(tags.noloadbalance), 0, "false", NULL, CH_RELOAD, 0,
     NULL, 0, 0, NULL, "`/replica` answers 503, so load balancers send no reads here."},
    {"tags.clonefrom", NULL, KT_BOOL, C(tags.clonefrom), 0, "false", NULL, CH_RELOAD, 0, NULL, 0,
     0, NULL, "Preferred source of pg_basebackup for new replicas."},
    {"tags.nosync", NULL, KT_BOOL, C(tags.nosync), 0, "false", NULL, CH_RELOAD, 0, NULL, 0, 0,
     NULL, "Never a synchronous standby."},
    {"tags.sync_priority", NULL, KT_INT, C(tags.sync_priority), 0, "1", NULL, CH_RELOAD, 0, NULL,
     0, 0, NULL,
     "Preference for synchronous standby; 0 or less behaves like nosync."},
    {"tags.replicatefrom", NULL, KT_STR, C(tags.replicatefrom), 0, NULL, "none", CH_RELOAD, 0,
     NULL, 0, 0, NULL, "Name of the member to stream from (cascading replication)."},

    /* ---- watchdog ---- */
    SECTION("watchdog", "Linux hardware/softdog watchdog that resets a primary whose pgwarden "
                        "hangs (off until pgwarden's watchdog support lands)."),
    {"watchdog.mode", NULL, KT_WDMODE, C(watchdog.mode), 0, "off", NULL, CH_RESTART, 0, NULL, 0,
     0, NULL, "`off` (YAML false too), `automatic` (use it if present) or `required`."},
    {"watchdog.device", NULL, KT_STR, C(watchdog.device), 0, "/dev/watchdog", NULL, CH_RESTART,
     KF_PATH, NULL, 0, 0, NULL, "Watchdog device."},
    {"watchdog.safety_margin", NULL, KT_INT, C(watchdog.safety_margin_s), 0, "5", NULL,
     CH_RESTART, KF_MIN | KF_MAX, NULL, -1, 3600, NULL,
     "Seconds between the watchdog firing and the lease expiring (timeout = ttl - "
     "safety_margin); -1 means ttl/2."},

    /* ---- backup ---- */
    SECTION("backup",
            "Backups as a cluster feature, with pgBackRest: WAL archiving kept on whichever node "
            "is primary (and `restore_command` on the replicas), scheduled full and "
            "differential backups run by the primary, `pgwarden ctl backup`. Every node's file "
            "names the same repository. See docs/backups.md."),
    {"backup.method", NULL, KT_CHOICE, C(backup.method), 0, NULL, "none (off)", CH_RESTART, 0,
     NULL, 0, 0, "pgbackrest", "`pgbackrest` turns backups on."},
    {"backup.command", NULL, KT_STR, C(backup.command), 0, "/usr/bin/pgbackrest", NULL,
     CH_RESTART, KF_PATH, NULL, 0, 0, NULL, "The pgbackrest program."},
    {"backup.stanza", NULL, KT_IDENT, C(backup.stanza), 0, NULL, "scope", CH_RESTART, 0, NULL, 0,
     0, NULL, "pgBackRest stanza of this cluster (created by the primary when missing)."},
    {"backup.options", NULL, KT_OPTIONS, C(backup.options), 0, NULL, "empty", CH_RESTART,
     KF_SECRET,
     NULL, 0, 0, "stanza|config|config-path|config-include-path|pg1-path|pg1-port|pg1-socket-path|"
     "pg1-user|pg1-host|type",
     "pgBackRest options, as a mapping (`repo1-path: /var/lib/pgbackrest`, `repo1-type: gcs`, "
     "`repo1-retention-full: 2`, `log-path: ...`; secret: they may hold repo1-cipher-pass or an "
     "object store key, and are never logged). pgwarden writes them, with the stanza's "
     "`pg1-*` options, into `<raft.data_dir>/pgbackrest.conf`, the only configuration file "
     "its pgbackrest commands read (`--config`); the options pgwarden sets itself are "
     "refused."},
    {"backup.full_interval", NULL, KT_DURATION, C(backup.full_interval_ms), 0, "604800", NULL,
     CH_RESTART, KF_MAX, NULL, 0, 45LL * 86400 * 1000, NULL,
     "A full backup is taken when the newest full one in the repository is this old (and at "
     "once when there is none); 0 turns scheduled full backups off."},
    {"backup.diff_interval", NULL, KT_DURATION, C(backup.diff_interval_ms), 0, "86400", NULL,
     CH_RESTART, KF_MAX, NULL, 0, 45LL * 86400 * 1000, NULL,
     "A differential backup is taken when the newest backup of any type is this old; 0 turns "
     "scheduled differential backups off."},
    {"backup.timeout", NULL, KT_DURATION, C(backup.timeout_ms), 0, "86400", NULL, CH_RESTART,
     KF_MIN | KF_MAX, NULL, 60000, 45LL * 86400 * 1000, NULL,
     "Deadline of one backup; pgbackrest is stopped when it runs longer."},

    /* ---- log ---- */
    SECTION("log", "Logging: one line per event to stderr (and to a file when log.dir is set)."),
    {"log.level", NULL, KT_LOGLEVEL, C(log.level), 0, "info", NULL, CH_RELOAD, 0,
     "PGWARDEN_LOG_LEVEL", 0, 0, NULL, "Lowest level logged (Patroni's upper-case names work)."},
    {"log.format", "type", KT_LOGFORMAT, C(log.format), 0, "plain", NULL, CH_RELOAD, 0,
     "PGWARDEN_LOG_FORMAT", 0, 0, NULL,
     "`plain` or `json` (one JSON object per line). Patroni's name `type` is accepted."},
    {"log.dir", NULL, KT_STR, C(log_dir_storage), 0, NULL, "none (stderr only)", CH_RELOAD, KF_PATH,
     "PGWARDEN_LOG_DIR", 0, 0, NULL, "Directory of pgwarden.log."},
};

const size_t cfg__nkeys = sizeof cfg__keys / sizeof cfg__keys[0];

_Static_assert(sizeof cfg__keys / sizeof cfg__keys[0] <= CFG__MAX_KEYS, "raise CFG__MAX_KEYS");

/* Dynamic-configuration keys of Patroni that later pgwarden features will
 * use: accepted in PATCH /config and ignored (YAML: a warning).
 *   pause           - lives outside struct cfg_dcs (the FSM's pause flag)
 *   failsafe_mode   - Patroni's DCS failsafe (Raft is embedded here) */
const char *const cfg__dcs_ignored[] = {
    "pause", "failsafe_mode", NULL,
};

const struct cfg_key *cfg__key_find(const char *path)
{
    for (size_t i = 0; i < cfg__nkeys; i++) {
        if (strcmp(cfg__keys[i].path, path) == 0)
            return &cfg__keys[i];
    }
    return NULL;
}

void *cfg__field(const struct cfg_key *k, struct cfg *c, struct cfg_dcs *dcs)
{
    if (k->base == BASE_DCS)
        return dcs != NULL ? (char *)dcs + k->off : NULL;
    return c != NULL ? (char *)c + k->off : NULL;
}
