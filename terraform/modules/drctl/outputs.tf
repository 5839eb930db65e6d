output "controller_addresses" {
  description = "Private address of each controller, one per availability zone (port 8080)."
  value       = local.addresses
}

output "etcd_endpoints" {
  description = "The etcd cluster, as drctl's --state etcd:// takes it."
  value       = "etcd://${local.endpoints}/drctl"
}

output "status_page_endpoints" {
  description = "The status page's website endpoints, one per region."
  value = [
    module.page_primary.website_endpoint,
    module.page_secondary.website_endpoint,
  ]
}

output "role_arn" {
  description = "The controllers' IAM role (its drctl policy is the one `drctl iam-policy` printed)."
  value       = aws_iam_role.controller.arn
}

output "log_group" {
  description = "Where the controllers' logs go."
  value       = aws_cloudwatch_log_group.controller.name
}
