# Example alert policies and a Cloud Monitoring dashboard over the metrics
# pgwarden serves on GET /metrics (api/handlers_metrics.c), which the Ops
# Agent (ops-agent.yaml, enable_ops_agent) writes to Managed Service for
# Prometheus: PromQL with the metrics' own names. tests/e2e/test_deploy.py
# checks that every metric named here is one /metrics serves.
#
# Backup age has no policy: pgwarden takes no backups yet and serves no such
# metric (issue 18, item 2). When it does, a policy on the age of the last
# successful backup belongs here.

locals {
  scope_sel = "scope=\"${var.scope}\""

  alert_policies = {
    no_primary = {
      name     = "pgwarden ${var.scope}: no primary"
      query    = "(max by (scope) (patroni_cluster_unlocked{${local.scope_sel}}) > 0) or (sum by (scope) (patroni_primary{${local.scope_sel}}) < 1)"
      duration = "60s"
      doc      = "No member has served as primary for a minute: writes fail. A failover takes ttl plus a few seconds, so this is not one. Look at `pgwarden ctl list` (its footer says why no candidate is promoted) and at the controller's log lines."
    }
    failover = {
      name     = "pgwarden ${var.scope}: a failover happened"
      query    = "sum by (scope) (increase(pgwarden_failovers_total{${local.scope_sel}}[5m])) > 0"
      duration = "0s"
      doc      = "The primary was lost and a replica promoted (not a planned switchover). `pgwarden ctl history` shows when and why; the old primary rejoins as a replica by itself (pg_rewind)."
    }
    replica_lag = {
      name     = "pgwarden ${var.scope}: replica lag"
      query    = "(max by (scope) (patroni_xlog_location{${local.scope_sel}}) - on (scope) group_right () (patroni_xlog_replayed_location{${local.scope_sel}} > 0)) > ${var.replica_lag_alert_bytes}"
      duration = "120s"
      doc      = "A replica has replayed more than replica_lag_alert_bytes less than the primary has written, for 2 minutes: past maximum_lag_on_failover it would not be promoted. Check its disk, its network and `pgwarden ctl list`."
    }
    fence = {
      name     = "pgwarden ${var.scope}: a node fenced PostgreSQL"
      query    = "sum by (scope, name) (increase(pgwarden_fences_total{${local.scope_sel}}[5m])) > 0"
      duration = "0s"
      doc      = "A primary could not renew its lease through a Raft majority in time and stopped its own PostgreSQL (sessions on it were cut). Usually a network partition, a paused VM or a slow disk; a failover follows."
    }
    backup_age = {
      name     = "pgwarden ${var.scope}: no recent backup"
      query    = "min by (scope) (pgwarden_backup_last_age_seconds{${local.scope_sel}}) > ${var.backup_age_alert_seconds}"
      duration = "600s"
      doc      = "The newest backup in the pgBackRest repository is older than backup_age_alert_seconds (with backup.method pgbackrest). `pgwarden ctl backup list` and GET /backup on the primary show the last result and pgBackRest's error; the log has its output."
    }
    archive_failing = {
      name     = "pgwarden ${var.scope}: WAL archiving fails"
      query    = "sum by (scope, name) (increase(pgwarden_archive_failed_total{${local.scope_sel}}[10m])) > 0"
      duration = "600s"
      doc      = "archive_command failed on a member for 10 minutes (pg_stat_archiver). WAL piles up in pg_wal until the disk fills, and point-in-time recovery stops at the last archived segment. PostgreSQL's log names the error."
    }
  }
}

resource "google_monitoring_alert_policy" "pgwarden" {
  for_each              = var.enable_alert_policies ? local.alert_policies : {}
  display_name          = each.value.name
  combiner              = "OR"
  notification_channels = var.alert_notification_channels

  documentation {
    content   = each.value.doc
    mime_type = "text/markdown"
  }

  conditions {
    display_name = each.value.name

    condition_prometheus_query_language {
      query               = each.value.query
      duration            = each.value.duration
      evaluation_interval = "30s"
      alert_rule          = each.key
      rule_group          = "pgwarden"
    }
  }
}

resource "google_monitoring_dashboard" "pgwarden" {
  count          = var.enable_dashboard ? 1 : 0
  dashboard_json = file("${path.module}/dashboards/pgwarden-cloud-monitoring.json")
}
