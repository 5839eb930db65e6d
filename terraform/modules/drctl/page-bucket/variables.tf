variable "bucket" {
  type        = string
  description = "The bucket's name (unique in all of S3)."
}

variable "tags" {
  type        = map(string)
  description = "Tags for every resource."
  default     = {}
}
