# pgwarden on three VMs in three zones behind two internal passthrough TCP
# load balancers: writers (5432, health check GET /primary on 8008) and
# readers (5432, GET /replica). There is no etcd tier: the three pgwarden
# processes are their own Raft group. See README.md for the runbook.

locals {
  node_names    = [for i in range(3) : "${var.name_prefix}-${i + 1}"]
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

# Reserved internal addresses: every node's configuration names the others'.
resource "google_compute_address" "node" {
  count        = 3
  name         = "${local.node_names[count.index]}-ip"
  region       = var.region
  subnetwork   = local.subnetwork
  address_type = "INTERNAL"
  address      = length(var.node_ips) == 3 ? var.node_ips[count.index] : null
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

resource "google_storage_bucket_iam_member" "deb" {
  count  = local.deb_bucket != "" ? 1 : 0
  bucket = local.deb_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.node.email}"
}

# --- the three VMs -------------------------------------------------------------

resource "google_compute_instance" "node" {
  count        = 3
  name         = local.node_names[count.index]
  zone         = var.zones[count.index]
  machine_type = var.machine_type
  tags         = [var.network_tag]

  allow_stopping_for_update = true

  boot_disk {
    initialize_params {
      image = var.image
      size  = var.disk_size_gb
      type  = var.disk_type
    }
  }

  # No external address: packages come through Cloud NAT, SSH through IAP.
  network_interface {
    subnetwork = local.subnetwork
    network_ip = google_compute_address.node[count.index].address
  }

  service_account {
    email  = google_service_account.node.email
    scopes = ["cloud-platform"]
  }

  # startup.sh reads the pgwarden-* attributes; render-config.sh turns them
  # into /etc/pgwarden/pgwarden.yml.
  metadata = {
    enable-oslogin         = "TRUE"
    startup-script         = file("${path.module}/startup.sh")
    pgwarden-render-config = file("${path.module}/render-config.sh")
    pgwarden-name          = local.node_names[count.index]
    pgwarden-scope         = var.scope
    pgwarden-self-ip       = google_compute_address.node[count.index].address
    pgwarden-partner-ips   = join(",", [for i, a in google_compute_address.node : a.address if i != count.index])
    pgwarden-raft-port     = tostring(var.raft_port)
    pgwarden-pg-version    = var.postgres_version
    pgwarden-deb-url       = var.pgwarden_deb_url
    pgwarden-secret-prefix = var.name_prefix
    pgwarden-subnet-cidr   = local.subnet_cidr
    pgwarden-client-cidrs  = join(",", var.pg_hba_client_cidrs)
    pgwarden-zone          = var.zones[count.index]
  }

  depends_on = [
    google_secret_manager_secret_version.pg,
    google_secret_manager_secret_iam_member.node,
    google_storage_bucket_iam_member.deb,
    google_compute_router_nat.nat,
  ]
}

# One unmanaged instance group per zone: the load balancers' backends.
resource "google_compute_instance_group" "node" {
  count     = 3
  name      = "${local.node_names[count.index]}-ig"
  zone      = var.zones[count.index]
  network   = data.google_compute_network.vpc.self_link
  instances = [google_compute_instance.node[count.index].self_link]
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

  backend {
    group          = google_compute_instance_group.node[0].id
    balancing_mode = "CONNECTION"
  }
  backend {
    group          = google_compute_instance_group.node[1].id
    balancing_mode = "CONNECTION"
  }
  backend {
    group          = google_compute_instance_group.node[2].id
    balancing_mode = "CONNECTION"
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

  backend {
    group          = google_compute_instance_group.node[0].id
    balancing_mode = "CONNECTION"
  }
  backend {
    group          = google_compute_instance_group.node[1].id
    balancing_mode = "CONNECTION"
  }
  backend {
    group          = google_compute_instance_group.node[2].id
    balancing_mode = "CONNECTION"
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
