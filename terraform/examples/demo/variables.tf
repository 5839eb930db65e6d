variable "region" {
  type        = string
  description = "The region of the demo estate and the controllers."
  default     = "eu-west-1"
}

variable "page_region" {
  type        = string
  description = "The second region the status page is exported to."
  default     = "eu-central-1"
}

variable "vpc_id" {
  type        = string
  description = "An existing VPC with private subnets in three availability zones."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Three private subnets, one per availability zone; the database and its replica use the first two."
}

variable "name" {
  type        = string
  description = "A prefix for the demo's resources; bucket names must be unique in all of S3, so make it yours."
  default     = "drctl-demo"
}

variable "domain" {
  type        = string
  description = "A domain for the demo's public hosted zone (e.g. demo.example.com); nothing outside it is touched."
}

variable "drctl_release_url" {
  type        = string
  description = "URL of the drctl release archive (drctl-VERSION-x86_64-linux.tar.gz, from scripts/release.sh)."
}

variable "drctl_release_sha256" {
  type        = string
  description = "SHA-256 of that archive (its .sha256 file)."
}

variable "etcd_release_sha256" {
  type        = string
  description = "SHA-256 of etcd-v3.5.17-linux-amd64.tar.gz (from its release page)."
}

variable "operator_cidrs" {
  type        = list(string)
  description = "Networks allowed to reach the controllers (status page, operator API)."
  default     = []
}
