variable "project_id" {
  description = "GCP project that receives the cluster."
  type        = string
}

variable "region" {
  description = "Region of the subnet, the load balancers and the health checks."
  type        = string
  default     = "europe-west1"
}

variable "zones" {
  description = "Three zones of the region, one VM in each."
  type        = list(string)
  default     = ["europe-west1-b", "europe-west1-c", "europe-west1-d"]

  validation {
    condition     = length(var.zones) == 3 && length(distinct(var.zones)) == 3
    error_message = "zones must name three distinct zones."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name; the VMs are <prefix>-1, -2, -3 (also their pgwarden member names)."
  type        = string
  default     = "pg"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.name_prefix))
    error_message = "name_prefix: a lower-case letter, then up to 30 letters, digits or dashes."
  }
}

variable "scope" {
  description = "pgwarden scope: the cluster's name (PostgreSQL's cluster_name)."
  type        = string
  default     = "main"
}

variable "network" {
  description = "Name of an existing VPC network."
  type        = string
  default     = "default"
}

variable "subnetwork" {
  description = "Name of an existing subnet in var.region to use. Empty: create <prefix>-subnet with subnet_cidr."
  type        = string
  default     = ""
}

variable "subnet_cidr" {
  description = "CIDR of the subnet created when var.subnetwork is empty; with an existing subnet, its CIDR (used in pg_hba.conf)."
  type        = string
  default     = "10.20.0.0/24"
}

variable "node_ips" {
  description = "Fixed internal IPs of the three VMs (empty: GCP picks them). They are reserved, so a VM re-created keeps its address and its place in the Raft group."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.node_ips) == 0 || length(var.node_ips) == 3
    error_message = "node_ips: either empty or three addresses."
  }
}

variable "create_nat" {
  description = "Create a Cloud Router + Cloud NAT so that the VMs (which have no external IP) reach the Debian and PostgreSQL package mirrors."
  type        = bool
  default     = true
}

variable "machine_type" {
  description = "Machine type of the VMs (node_machine_type overrides it per node). A change stops a VM: Terraform does so only for stoppable_node, see README.md \"Roll a change\"."
  type        = string
  default     = "e2-standard-2"
}

variable "node_machine_type" {
  description = "Per-node machine type, keyed by node name ({\"pg-2\" = \"n2-standard-4\"}): to change one node at a time."
  type        = map(string)
  default     = {}
}

variable "stoppable_node" {
  description = "The one node (name) Terraform may stop for an in-place change such as its machine type; empty: none. Switch the primary role away from it first."
  type        = string
  default     = ""
}

variable "boot_disk_size_gb" {
  description = "Boot disk size (the system and the packages; PostgreSQL's data is on the data disk). A change replaces the VMs: roll it (README.md)."
  type        = number
  default     = 50
}

variable "boot_disk_type" {
  description = "Boot disk type. A change replaces the VMs: roll it (README.md)."
  type        = string
  default     = "pd-ssd"
}

variable "image" {
  description = "Boot image (Debian 12: the startup script uses apt and Debian's PostgreSQL packaging). A change replaces the VMs: roll it (README.md); node_image overrides it per node."
  type        = string
  default     = "debian-cloud/debian-12"
}

variable "node_image" {
  description = "Per-node boot image, keyed by node name ({\"pg-3\" = \"debian-cloud/debian-12-bookworm-v20250610\"}): to roll an image one node at a time."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Deletion protection of the VMs: Compute Engine refuses to delete (or replace) them. `gcloud.sh roll` lifts it for the one node it replaces."
  type        = bool
  default     = true
}

variable "data_disk_size_gb" {
  description = "Size of each node's data disk (PostgreSQL's data directory, WAL and raft.data_dir). Can grow in place (startup.sh grows the filesystem at the next boot), never shrink."
  type        = number
  default     = 100
}

variable "data_disk_type" {
  description = "Type of the data disks: pd-ssd or pd-balanced. Changing it would replace the disks, which prevent_destroy refuses: move to another type with a snapshot and a roll instead."
  type        = string
  default     = "pd-ssd"

  validation {
    condition     = contains(["pd-ssd", "pd-balanced"], var.data_disk_type)
    error_message = "data_disk_type: pd-ssd or pd-balanced."
  }
}

variable "snapshot_retention_days" {
  description = "Days each daily snapshot of the data disks is kept (kept as well when a disk is deleted)."
  type        = number
  default     = 14

  validation {
    condition     = var.snapshot_retention_days >= 1
    error_message = "snapshot_retention_days: at least 1."
  }
}

variable "snapshot_start_time" {
  description = "Start of the daily snapshot window, UTC, HH:00."
  type        = string
  default     = "03:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):00$", var.snapshot_start_time))
    error_message = "snapshot_start_time: HH:00 (UTC, on the hour)."
  }
}

variable "postgres_version" {
  description = "PostgreSQL major version. 15 comes from Debian 12; others from apt.postgresql.org."
  type        = string
  default     = "15"
}

variable "pgwarden_deb_url" {
  description = "Where the VMs download the pgwarden .deb: gs://BUCKET/pgwarden_<version>_amd64.deb (the VMs get read access to that bucket) or an https:// URL."
  type        = string

  validation {
    condition     = can(regex("^(gs://[^/]+/.+|https://.+)\\.deb$", var.pgwarden_deb_url))
    error_message = "pgwarden_deb_url: gs://BUCKET/PATH.deb or https://HOST/PATH.deb."
  }
}

variable "raft_port" {
  description = "pgwarden's Raft port (raft.self_addr)."
  type        = number
  default     = 5010
}

variable "network_tag" {
  description = "Network tag of the three VMs; the firewall rules between them match it."
  type        = string
  default     = "pgwarden"
}

variable "client_source_tags" {
  description = "Network tags of the VMs allowed to connect to PostgreSQL (port 5432) through the load balancers."
  type        = list(string)
  default     = ["pg-client"]
}

variable "client_source_ranges" {
  description = "CIDR ranges allowed to connect to PostgreSQL (port 5432) through the load balancers."
  type        = list(string)
  default     = []
}

variable "pg_hba_client_cidrs" {
  description = "Networks pg_hba.conf accepts client connections from (password authentication, scram-sha-256). The firewall decides who can reach port 5432 at all."
  type        = list(string)
  default     = ["10.0.0.0/8"]
}

variable "enable_iap_ssh" {
  description = "Allow SSH from Identity-Aware Proxy (35.235.240.0/20) so that `gcloud compute ssh --tunnel-through-iap` works without external IPs."
  type        = bool
  default     = true
}

variable "writer_drop_traffic_if_unhealthy" {
  description = "Writer LB: drop new connections while no VM answers 200 on /primary (during a failover) instead of spreading them over all VMs, where replicas would refuse writes."
  type        = bool
  default     = true
}

variable "enable_ops_agent" {
  description = "Install Google's Ops Agent on the VMs with ops-agent.yaml (pgwarden's and PostgreSQL's logs to Cloud Logging, pgwarden's /metrics to Managed Service for Prometheus) and give the VMs' service account roles/logging.logWriter and roles/monitoring.metricWriter."
  type        = bool
  default     = true
}

variable "enable_stonith" {
  description = "Fencing from outside: install stonith-reset.sh as every node's postgresql.pre_promote (it resets the former primary's VM through the Compute Engine API before a promotion; no promotion while the API cannot be reached) and give the VMs' service account compute.instances.reset on the node VMs and compute.zoneOperations.get (custom roles). See README.md, \"Fencing from outside\"."
  type        = bool
  default     = false
}

variable "enable_alert_policies" {
  description = "Create the example alert policies of monitoring.tf (no primary, failover, replica lag, fencing). Needs enable_ops_agent (their metrics come from it)."
  type        = bool
  default     = false
}

variable "alert_notification_channels" {
  description = "Notification channels (projects/PROJECT/notificationChannels/ID) of the alert policies."
  type        = list(string)
  default     = []
}

variable "backup_bucket" {
  description = "A GCS bucket for pgBackRest (backup.method pgbackrest: WAL archive, scheduled backups, point-in-time recovery; docs/backups.md). Empty: no backups. The nodes' service account gets roles/storage.objectAdmin on it."
  type        = string
  default     = ""
}

variable "backup_age_alert_seconds" {
  description = "Alert when the newest backup is older than this (the nodes' backup.full_interval + backup.diff_interval, plus the time a backup takes)."
  type        = number
  default     = 90000
}

variable "replica_lag_alert_bytes" {
  description = "Alert when a replica replays this many bytes behind the primary for 2 minutes. The default is the maximum_lag_on_failover render-config.sh sets: such a replica would not be promoted."
  type        = number
  default     = 1048576
}

variable "enable_dashboard" {
  description = "Create the Cloud Monitoring dashboard of dashboards/pgwarden-cloud-monitoring.json. Needs enable_ops_agent."
  type        = bool
  default     = false
}
