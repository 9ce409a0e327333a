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
  description = "Machine type of the three VMs."
  type        = string
  default     = "e2-standard-2"
}

variable "disk_size_gb" {
  description = "Boot disk size (holds PostgreSQL's data directory)."
  type        = number
  default     = 50
}

variable "disk_type" {
  description = "Boot disk type."
  type        = string
  default     = "pd-ssd"
}

variable "image" {
  description = "Boot image (Debian 12: the startup script uses apt and Debian's PostgreSQL packaging)."
  type        = string
  default     = "debian-cloud/debian-12"
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
