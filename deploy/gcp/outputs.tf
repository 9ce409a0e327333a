output "writer_ip" {
  description = "Internal address of the writer load balancer (PostgreSQL on 5432, follows the primary)."
  value       = google_compute_address.writer.address
}

output "reader_ip" {
  description = "Internal address of the reader load balancer (PostgreSQL on 5432, spread over the replicas)."
  value       = google_compute_address.reader.address
}

output "nodes" {
  description = "The three VMs: name => zone, internal address and data disk."
  value = {
    for k, vm in google_compute_instance.node : k => {
      zone      = vm.zone
      ip        = google_compute_address.node[k].address
      data_disk = google_compute_disk.data[k].name
    }
  }
}

output "ctl_endpoints" {
  description = "REST APIs for pgwarden ctl --endpoint (from a machine allowed to reach 8008, e.g. one of the VMs)."
  value       = [for a in google_compute_address.node : "http://${a.address}:8008"]
}

output "secret_names" {
  description = "Secret Manager secrets holding the passwords (superuser, replication, rewind, restapi, raft)."
  value       = { for k, s in google_secret_manager_secret.pg : k => s.secret_id }
}
