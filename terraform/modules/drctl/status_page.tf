# The status page exported to a bucket in each of two regions, so
# customers can read it when the controllers' region is down. The
# controllers write it (`drctl status-page export`, then a sync) every
# minute. Both buckets answer as S3 websites; put your domain on a CDN
# with the two as an origin group (failover), since two regions cannot
# share one bucket name, which a plain Route53 alias to a website needs.

module "page_primary" {
  source    = "./page-bucket"
  providers = { aws = aws.page_primary }
  bucket    = "${var.name}-status-${var.status_page_regions[0]}-${data.aws_caller_identity.current.account_id}"
  tags      = local.tags
}

module "page_secondary" {
  source    = "./page-bucket"
  providers = { aws = aws.page_secondary }
  bucket    = "${var.name}-status-${var.status_page_regions[1]}-${data.aws_caller_identity.current.account_id}"
  tags      = local.tags
}
