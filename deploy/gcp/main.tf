# pgwarden on three VMs in three zones behind two internal passthrough TCP
# load balancers: writers (5432, health check GET /primary on 8008) and
# readers (5432, GET /replica). There is no etcd tier: the three pgwarden
# processes are their own Raft group. See README.md for the runbook.
#
# The data survives the infrastructure: each node's PostgreSQL data directory
# and Raft directory live on a persistent disk of its own (prevent_destroy,
# daily snapshots), which a replaced VM attaches again; every per-node
# resource is a for_each keyed by the node's name, and nothing shared forces
# the VMs to be replaced or stopped together (README.md, "Roll a change").

locals {
  # The three nodes, keyed by name (also their pgwarden member names).
  nodes = {
    for i in range(3) : "${var.name_prefix}-${i + 1}" => {
      zone = var.zones[i]
      ip   = length(var.node_ips) == 3 ? var.node_ips[i] : null
    }
  }
  # Device name of every node's data disk: startup.sh mounts
  # /dev/disk/by-id/google-<data_device> on /var/lib/postgresql.
  data_device   = "pgwarden-data"
  create_subnet = var.subnetwork == ""
  subnetwork    = local.create_subnet ? google_compute_subnetwork.pg[0].self_link : data.google_compute_subnetwork.existing[0].self_link
  subnet_cidr   = local.create_subnet ? var.subnet_cidr : data.google_compute_subnetwork.existing[0].ip_cidr_range
  deb_bucket    = startswith(var.pgwarden_deb_url, "gs://") ? split("/", var.pgwarden_deb_url)[2] : ""
  # Passwords live in Secret Manager; the VMs read them at boot.
  secrets = ["superuser", "replication", "rewind", "restapi", "raft"]
  # Where Google's health-check probes come from (health-check-concepts).
  health_check_ranges = ["35.191.0.0/16", "130.211.0.0/22"]
}

# --- network -----------------------------------------------------------------

data "google_compute_network" "vpc" {
  name = var.network
}

resource "google_compute_subnetwork" "pg" {
  count                    = local.create_subnet ? 1 : 0
  name                     = "${var.name_prefix}-subnet"
  region                   = var.region
  network                  = data.google_compute_network.vpc.self_link
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true
}

data "google_compute_subnetwork" "existing" {
  count  = local.create_subnet ? 0 : 1
  name   = var.subnetwork
  region = var.region
}

resource "google_compute_router" "nat" {
  count   = var.create_nat ? 1 : 0
  name    = "${var.name_prefix}-router"
  region  = var.region
  network = data.google_compute_network.vpc.self_link
}

resource "google_compute_router_nat" "nat" {
  count                              = var.create_nat ? 1 : 0
  name                               = "${var.name_prefix}-nat"
  router                             = google_compute_router.nat[0].name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = local.subnetwork
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }
}

# Reserved internal addresses: every node's configuration names the others',
# and a replaced VM keeps its address (and its place in the Raft group).
resource "google_compute_address" "node" {
  for_each     = local.nodes
  name         = "${each.key}-ip"
  region       = var.region
  subnetwork   = local.subnetwork
  address_type = "INTERNAL"
  address      = each.value.ip
}

resource "google_compute_address" "writer" {
  name         = "${var.name_prefix}-writer-ip"
  region       = var.region
  subnetwork   = local.subnetwork
  address_type = "INTERNAL"
}

resource "google_compute_address" "reader" {
  name         = "${var.name_prefix}-reader-ip"
  region       = var.region
  subnetwork   = local.subnetwork
  address_type = "INTERNAL"
}

# --- firewall ------------------------------------------------------------------

# Raft and PostgreSQL (replication, pg_rewind) between the three VMs only.
resource "google_compute_firewall" "cluster" {
  name        = "${var.name_prefix}-cluster"
  network     = data.google_compute_network.vpc.self_link
  description = "pgwarden Raft and PostgreSQL between the pgwarden VMs"
  direction   = "INGRESS"
  source_tags = [var.network_tag]
  target_tags = [var.network_tag]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.raft_port), "5432"]
  }
}

# The REST API (8008): Google's health checkers...
resource "google_compute_firewall" "api_health_checks" {
  name          = "${var.name_prefix}-api-health-checks"
  network       = data.google_compute_network.vpc.self_link
  description   = "pgwarden REST API from Google Cloud health checkers"
  direction     = "INGRESS"
  source_ranges = local.health_check_ranges
  target_tags   = [var.network_tag]

  allow {
    protocol = "tcp"
    ports    = ["8008"]
  }
}

# ...and the VMs themselves (status fetches, command forwarding, pgwarden ctl).
resource "google_compute_firewall" "api_nodes" {
  name        = "${var.name_prefix}-api-nodes"
  network     = data.google_compute_network.vpc.self_link
  description = "pgwarden REST API between the pgwarden VMs"
  direction   = "INGRESS"
  source_tags = [var.network_tag]
  target_tags = [var.network_tag]

  allow {
    protocol = "tcp"
    ports    = ["8008"]
  }
}

# Applications: passthrough load balancers keep the client's address, so the
# clients themselves must be allowed to reach 5432 on the VMs.
resource "google_compute_firewall" "pg_clients" {
  count         = length(var.client_source_tags) + length(var.client_source_ranges) > 0 ? 1 : 0
  name          = "${var.name_prefix}-pg-clients"
  network       = data.google_compute_network.vpc.self_link
  description   = "PostgreSQL clients through the writer and reader load balancers"
  direction     = "INGRESS"
  source_tags   = var.client_source_tags
  source_ranges = var.client_source_ranges
  target_tags   = [var.network_tag]

  allow {
    protocol = "tcp"
    ports    = ["5432"]
  }
}

resource "google_compute_firewall" "ssh_iap" {
  count         = var.enable_iap_ssh ? 1 : 0
  name          = "${var.name_prefix}-ssh-iap"
  network       = data.google_compute_network.vpc.self_link
  description   = "SSH through Identity-Aware Proxy"
  direction     = "INGRESS"
  source_ranges = ["35.235.240.0/20"]
  target_tags   = [var.network_tag]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

# --- secrets -------------------------------------------------------------------

resource "random_password" "secret" {
  for_each = toset(local.secrets)
  length   = 32
  special  = false
}

resource "google_secret_manager_secret" "pg" {
  for_each  = toset(local.secrets)
  secret_id = "${var.name_prefix}-${each.key}-password"

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "pg" {
  for_each    = toset(local.secrets)
  secret      = google_secret_manager_secret.pg[each.key].id
  secret_data = random_password.secret[each.key].result
}

resource "google_service_account" "node" {
  account_id   = "${var.name_prefix}-pgwarden"
  display_name = "pgwarden VMs (${var.name_prefix})"
}

resource "google_secret_manager_secret_iam_member" "node" {
  for_each  = toset(local.secrets)
  secret_id = google_secret_manager_secret.pg[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.node.email}"
}

# backup.method pgbackrest writes and expires backups and WAL in this bucket
# (render-config.sh: repo1-type gcs with the VM's service account)
resource "google_storage_bucket_iam_member" "backup" {
  count  = var.backup_bucket == "" ? 0 : 1
  bucket = var.backup_bucket
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.node.email}"
}

resource "google_storage_bucket_iam_member" "deb" {
  count  = local.deb_bucket != "" ? 1 : 0
  bucket = local.deb_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.node.email}"
}

# The Ops Agent (ops-agent.yaml) writes the logs and the /metrics samples
# with the VMs' service account.
resource "google_project_iam_member" "node_telemetry" {
  for_each = var.enable_ops_agent ? toset(["roles/logging.logWriter", "roles/monitoring.metricWriter"]) : toset([])
  project  = var.project_id
  role     = each.key
  member   = "serviceAccount:${google_service_account.node.email}"
}

# Fencing from outside (STONITH, enable_stonith): stonith-reset.sh, each node's
# pre_promote, resets the former primary's VM through the Compute Engine API
# before promoting. Least privilege: a custom role holding only
# compute.instances.reset, granted on the three node VMs (not on the
# project), and one holding compute.zoneOperations.get (to wait for the
# reset's operation; a project-level permission that reads operation status
# only). Custom role ids cannot be reused for 7 days after a deletion.
resource "google_project_iam_custom_role" "stonith_reset" {
  count       = var.enable_stonith ? 1 : 0
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_pgwarden_reset"
  title       = "pgwarden STONITH: reset a node VM (${var.name_prefix})"
  description = "Granted on the pgwarden node VMs only: lets a node reset the former primary before promoting."
  permissions = ["compute.instances.reset"]
}

resource "google_project_iam_custom_role" "stonith_operations" {
  count       = var.enable_stonith ? 1 : 0
  project     = var.project_id
  role_id     = "${replace(var.name_prefix, "-", "_")}_pgwarden_zone_ops"
  title       = "pgwarden STONITH: read zone operations (${var.name_prefix})"
  description = "Lets a node wait until the reset it asked for is DONE."
  permissions = ["compute.zoneOperations.get"]
}

resource "google_compute_instance_iam_member" "stonith_reset" {
  for_each      = var.enable_stonith ? local.nodes : {}
  project       = var.project_id
  zone          = each.value.zone
  instance_name = google_compute_instance.node[each.key].name
  role          = google_project_iam_custom_role.stonith_reset[0].id
  member        = "serviceAccount:${google_service_account.node.email}"
}

resource "google_project_iam_member" "stonith_operations" {
  count   = var.enable_stonith ? 1 : 0
  project = var.project_id
  role    = google_project_iam_custom_role.stonith_operations[0].id
  member  = "serviceAccount:${google_service_account.node.email}"
}

# --- the data disks ----------------------------------------------------------------

# PostgreSQL's data directory and raft.data_dir, one disk per node in the
# node's zone. Not part of the VM: replacing the VM (new image, new boot disk)
# attaches the same disk again. prevent_destroy makes any plan that would
# delete one fail (a change of type or name_prefix included); a size increase
# is applied in place and startup.sh grows the filesystem at the next boot.
resource "google_compute_disk" "data" {
  for_each = local.nodes
  name     = "${each.key}-data"
  zone     = each.value.zone
  type     = var.data_disk_type
  size     = var.data_disk_size_gb

  labels = {
    pgwarden-node = each.key
  }

  lifecycle {
    prevent_destroy = true
  }
}

# Daily snapshots of every data disk, kept snapshot_retention_days, and kept
# when the disk itself is deleted. PGDATA and pg_wal are on the same disk, so
# each snapshot is crash-consistent (PostgreSQL recovers it like after a power
# loss). A safety net against losing a disk or a zone, not point-in-time
# recovery: that needs WAL archiving (issue 18, backups).
resource "google_compute_resource_policy" "data_snapshots" {
  name   = "${var.name_prefix}-data-snapshots"
  region = var.region

  snapshot_schedule_policy {
    schedule {
      daily_schedule {
        days_in_cycle = 1
        start_time    = var.snapshot_start_time
      }
    }
    retention_policy {
      max_retention_days    = var.snapshot_retention_days
      on_source_disk_delete = "KEEP_AUTO_SNAPSHOTS"
    }
    snapshot_properties {
      storage_locations = [var.region]
      guest_flush       = false

      labels = {
        pgwarden-prefix = var.name_prefix
      }
    }
  }
}

resource "google_compute_disk_resource_policy_attachment" "data_snapshots" {
  for_each = local.nodes
  name     = google_compute_resource_policy.data_snapshots.name
  disk     = google_compute_disk.data[each.key].name
  zone     = each.value.zone
}

# --- the three VMs -------------------------------------------------------------

# One resource per node (for_each): `terraform apply -replace` and the
# per-node variables (node_image, node_machine_type, stoppable_node) act on one
# node at a time. A change of a shared variable (image, machine_type, boot
# disk) cannot take all three down in one apply: replacing a VM is refused
# while deletion_protection is on, and stopping one is refused except for
# stoppable_node. `gcloud.sh roll` replaces them one by one.
resource "google_compute_instance" "node" {
  for_each     = local.nodes
  name         = each.key
  zone         = each.value.zone
  machine_type = lookup(var.node_machine_type, each.key, var.machine_type)
  tags         = [var.network_tag]

  deletion_protection = var.deletion_protection
  # a machine type change stops the VM: only the one named, never all three
  allow_stopping_for_update = each.key == var.stoppable_node

  boot_disk {
    initialize_params {
      image = lookup(var.node_image, each.key, var.image)
      size  = var.boot_disk_size_gb
      type  = var.boot_disk_type
    }
  }

  # PGDATA and raft.data_dir (startup.sh mounts it by this device name).
  attached_disk {
    source      = google_compute_disk.data[each.key].self_link
    device_name = local.data_device
    mode        = "READ_WRITE"
  }

  # No external address: packages come through Cloud NAT, SSH through IAP.
  network_interface {
    subnetwork = local.subnetwork
    network_ip = google_compute_address.node[each.key].address
  }

  service_account {
    email  = google_service_account.node.email
    scopes = ["cloud-platform"]
  }

  # startup.sh reads the pgwarden-* attributes; render-config.sh turns them
  # into /etc/pgwarden/pgwarden.yml.
  metadata = {
    enable-oslogin            = "TRUE"
    startup-script            = file("${path.module}/startup.sh")
    pgwarden-render-config    = file("${path.module}/render-config.sh")
    pgwarden-name             = each.key
    pgwarden-scope            = var.scope
    pgwarden-self-ip          = google_compute_address.node[each.key].address
    pgwarden-partner-ips      = join(",", [for k, a in google_compute_address.node : a.address if k != each.key])
    pgwarden-raft-port        = tostring(var.raft_port)
    pgwarden-pg-version       = var.postgres_version
    pgwarden-deb-url          = var.pgwarden_deb_url
    pgwarden-secret-prefix    = var.name_prefix
    pgwarden-subnet-cidr      = local.subnet_cidr
    pgwarden-client-cidrs     = join(",", var.pg_hba_client_cidrs)
    pgwarden-zone             = each.value.zone
    pgwarden-backup-bucket    = var.backup_bucket
    pgwarden-data-device      = local.data_device
    pgwarden-ops-agent-config = var.enable_ops_agent ? file("${path.module}/ops-agent.yaml") : ""
    pgwarden-stonith-script   = var.enable_stonith ? file("${path.module}/stonith-reset.sh") : ""
    pgwarden-stonith-map      = var.enable_stonith ? join("\n", [for k, n in local.nodes : "${k} ${n.zone}"]) : ""
  }

  lifecycle {
    precondition {
      condition     = alltrue([for k in concat(keys(var.node_image), keys(var.node_machine_type)) : contains(keys(local.nodes), k)])
      error_message = "node_image and node_machine_type are keyed by node name: ${join(", ", keys(local.nodes))}."
    }
    precondition {
      condition     = var.stoppable_node == "" || contains(keys(local.nodes), var.stoppable_node)
      error_message = "stoppable_node: empty or one of ${join(", ", keys(local.nodes))}."
    }
  }

  depends_on = [
    google_secret_manager_secret_version.pg,
    google_secret_manager_secret_iam_member.node,
    google_storage_bucket_iam_member.deb,
    google_project_iam_member.node_telemetry,
    google_compute_router_nat.nat,
  ]
}

# One unmanaged instance group per zone: the load balancers' backends. A
# replaced VM leaves its group (Compute Engine removes a deleted instance);
# the next apply of this group (`gcloud.sh roll` runs it) adds it back.
resource "google_compute_instance_group" "node" {
  for_each  = local.nodes
  name      = "${each.key}-ig"
  zone      = each.value.zone
  network   = data.google_compute_network.vpc.self_link
  instances = [google_compute_instance.node[each.key].self_link]
}

# --- health checks: Patroni-compatible endpoints on 8008 ------------------------

# 200 only on the node that holds the primary lease and runs PostgreSQL as
# primary. Every second, 1 s timeout; healthy after 1 success, unhealthy
# after 2 failures.
resource "google_compute_region_health_check" "primary" {
  name                = "${var.name_prefix}-primary"
  region              = var.region
  check_interval_sec  = 1
  timeout_sec         = 1
  healthy_threshold   = 1
  unhealthy_threshold = 2

  http_health_check {
    port         = 8008
    request_path = "/primary"
  }
}

# 200 on running replicas (not tagged noloadbalance).
resource "google_compute_region_health_check" "replica" {
  name                = "${var.name_prefix}-replica"
  region              = var.region
  check_interval_sec  = 1
  timeout_sec         = 1
  healthy_threshold   = 1
  unhealthy_threshold = 2

  http_health_check {
    port         = 8008
    request_path = "/replica"
  }
}

# --- load balancers ----------------------------------------------------------------

resource "google_compute_region_backend_service" "writer" {
  name                            = "${var.name_prefix}-writer"
  region                          = var.region
  load_balancing_scheme           = "INTERNAL"
  protocol                        = "TCP"
  health_checks                   = [google_compute_region_health_check.primary.id]
  connection_draining_timeout_sec = 0

  dynamic "backend" {
    for_each = google_compute_instance_group.node
    content {
      group          = backend.value.id
      balancing_mode = "CONNECTION"
    }
  }

  # A session to a node that stopped answering 200 is not kept on it.
  connection_tracking_policy {
    connection_persistence_on_unhealthy_backends = "NEVER_PERSIST"
  }

  # While nobody is primary (a failover takes ttl + a few seconds), refuse
  # new connections rather than spreading them over the replicas.
  dynamic "failover_policy" {
    for_each = var.writer_drop_traffic_if_unhealthy ? [1] : []
    content {
      drop_traffic_if_unhealthy = true
    }
  }
}

resource "google_compute_region_backend_service" "reader" {
  name                            = "${var.name_prefix}-reader"
  region                          = var.region
  load_balancing_scheme           = "INTERNAL"
  protocol                        = "TCP"
  health_checks                   = [google_compute_region_health_check.replica.id]
  connection_draining_timeout_sec = 10

  dynamic "backend" {
    for_each = google_compute_instance_group.node
    content {
      group          = backend.value.id
      balancing_mode = "CONNECTION"
    }
  }
}

resource "google_compute_forwarding_rule" "writer" {
  name                  = "${var.name_prefix}-writer"
  region                = var.region
  load_balancing_scheme = "INTERNAL"
  backend_service       = google_compute_region_backend_service.writer.id
  ip_protocol           = "TCP"
  ports                 = ["5432"]
  network               = data.google_compute_network.vpc.self_link
  subnetwork            = local.subnetwork
  ip_address            = google_compute_address.writer.address
}

resource "google_compute_forwarding_rule" "reader" {
  name                  = "${var.name_prefix}-reader"
  region                = var.region
  load_balancing_scheme = "INTERNAL"
  backend_service       = google_compute_region_backend_service.reader.id
  ip_protocol           = "TCP"
  ports                 = ["5432"]
  network               = data.google_compute_network.vpc.self_link
  subnetwork            = local.subnetwork
  ip_address            = google_compute_address.reader.address
}
