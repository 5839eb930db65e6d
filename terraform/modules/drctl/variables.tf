variable "name" {
  type        = string
  description = "A prefix for every resource this module makes (letters, digits, hyphens)."
  default     = "drctl"
}

variable "vpc_id" {
  type        = string
  description = "The VPC the controllers run in."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Three private subnets, one per availability zone: a controller and an etcd member in each."
  validation {
    condition     = length(var.subnet_ids) == 3
    error_message = "Give exactly three subnets, one per availability zone (etcd needs three members for a quorum that survives a zone)."
  }
}

variable "topology_yaml" {
  type        = string
  description = "The topology the controllers run: the text of drctl.yaml (e.g. file(\"drctl.yaml\"), or a templatefile)."
}

variable "extra_files" {
  type        = map(string)
  description = "Other files the topology refers to (runbooks, chaos experiments): path on the controller, relative to the topology's folder, => local path."
  default     = {}
}

variable "iam_policy_json" {
  type        = string
  description = "The controllers' AWS permissions: the output of `drctl iam-policy -f drctl.yaml --for serve` (a test checks the demo's is current)."
}

variable "status_page_domain" {
  type        = string
  description = "The status page's public name (used in its links, e.g. status.example.com)."
}

variable "status_page_regions" {
  type        = list(string)
  description = "The two regions the status page is exported to; they must match the page_primary and page_secondary providers."
  validation {
    condition     = length(var.status_page_regions) == 2 && var.status_page_regions[0] != var.status_page_regions[1]
    error_message = "Give two different regions."
  }
}

variable "operator_cidrs" {
  type        = list(string)
  description = "Networks allowed to reach the controllers' HTTP port (status page and operator API)."
  default     = []
}

variable "instance_type" {
  type        = string
  description = "EC2 instance type of each controller (x86_64)."
  default     = "t3.small"
}

variable "drctl_release_url" {
  type        = string
  description = "URL of the drctl release archive (drctl-VERSION-x86_64-linux.tar.gz, from scripts/release.sh) the controllers download at boot."
}

variable "drctl_release_sha256" {
  type        = string
  description = "SHA-256 of that archive (its .sha256 file): a download that does not match is not installed."
}

variable "etcd_version" {
  type        = string
  description = "The etcd release the members run (from github.com/etcd-io/etcd releases)."
  default     = "v3.5.17"
}

variable "etcd_release_sha256" {
  type        = string
  description = "SHA-256 of etcd-<version>-linux-amd64.tar.gz."
}

variable "log_retention_days" {
  type        = number
  description = "How long the controllers' logs are kept in CloudWatch Logs."
  default     = 365
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}
