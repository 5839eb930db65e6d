# The demo estate drctl fails over: an S3 bucket pair drctl copies
# between, an RDS PostgreSQL instance with a read replica in another
# availability zone, and the Route53 record of a service that drctl points
# at the zone that survives. Then the controllers (../../modules/drctl),
# given this estate's topology and the policy `drctl iam-policy` prints
# for it.

data "aws_caller_identity" "current" {}

data "aws_subnet" "zone" {
  count = 3
  id    = var.subnet_ids[count.index]
}

locals {
  account  = data.aws_caller_identity.current.account_id
  bucket_a = "${var.name}-assets-a-${local.account}"
  bucket_b = "${var.name}-assets-b-${local.account}"
  az       = [for s in data.aws_subnet.zone : s.availability_zone]
  values = {
    region   = var.region
    az_a     = local.az[0]
    az_b     = local.az[1]
    bucket_a = local.bucket_a
    bucket_b = local.bucket_b
    db_a     = aws_db_instance.ledger_a.identifier
    db_b     = aws_db_instance.ledger_b.identifier
    zone_id  = aws_route53_zone.demo.zone_id
    record   = "pay.${var.domain}."
    # The same name as Route53 normalizes it in IAM conditions.
    record_name = "pay.${var.domain}"
    account  = local.account
  }
  # The topology, and the policy drctl prints for it (both templates share
  # the values; a test renders both and compares the policy with
  # `drctl iam-policy`'s).
  drctl_yaml  = templatefile("${path.module}/drctl.yaml.tftpl", local.values)
  policy_json = templatefile("${path.module}/drctl-policy.json.tftpl", local.values)
}

# ---- S3: a bucket per zone; drctl copies a to b ----

resource "aws_kms_key" "demo" {
  description         = "drctl demo: buckets and databases"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::${local.account}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

resource "aws_s3_bucket" "assets" {
  for_each = toset([local.bucket_a, local.bucket_b])
  #checkov:skip=CKV_AWS_18:A demo; its objects are test data (turn on access logging for real buckets)
  #checkov:skip=CKV_AWS_144:drctl replicates this pair itself (`replication: { by: drctl }`), which is what the demo shows
  #checkov:skip=CKV2_AWS_62:Nothing consumes the demo buckets' events
  #checkov:skip=CKV_AWS_145:SSE-S3, not SSE-KMS: drctl's policy grants no KMS key, and copying SSE-KMS objects needs kms:Decrypt and kms:GenerateDataKey on the bucket's key
  bucket        = each.value
  force_destroy = true
}

resource "aws_s3_bucket_versioning" "assets" {
  for_each = aws_s3_bucket.assets
  bucket   = each.value.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "assets" {
  for_each = aws_s3_bucket.assets
  bucket   = each.value.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "assets" {
  for_each                = aws_s3_bucket.assets
  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_lifecycle_configuration" "assets" {
  for_each = aws_s3_bucket.assets
  bucket   = each.value.id
  rule {
    id     = "old-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# ---- RDS PostgreSQL: a primary and a read replica in another zone ----

resource "aws_db_subnet_group" "demo" {
  name       = "${var.name}-ledger"
  subnet_ids = var.subnet_ids
}

resource "aws_db_parameter_group" "demo" {
  name   = "${var.name}-ledger"
  family = "postgres16"
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  # Clients must use TLS (drctl does: sslmode=verify-full with the RDS CA).
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name = "${var.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "monitoring.rds.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "ledger_a" {
  #checkov:skip=CKV_AWS_157:The demo's standby is the read replica in another zone, which drctl promotes; Multi-AZ would hide the failover drctl is there to show
  identifier                          = "${var.name}-ledger-a"
  engine                              = "postgres"
  engine_version                      = "16"
  instance_class                      = "db.t4g.micro"
  allocated_storage                   = 20
  storage_encrypted                   = true
  kms_key_id                          = aws_kms_key.demo.arn
  username                            = "ledger"
  manage_master_user_password         = true
  db_subnet_group_name                = aws_db_subnet_group.demo.name
  parameter_group_name                = aws_db_parameter_group.demo.name
  availability_zone                   = local.az[0]
  backup_retention_period             = 7
  deletion_protection                 = true
  iam_database_authentication_enabled = true
  auto_minor_version_upgrade          = true
  copy_tags_to_snapshot               = true
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = aws_kms_key.demo.arn
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-ledger-a-final"
  publicly_accessible                 = false
}

resource "aws_db_instance" "ledger_b" {
  #checkov:skip=CKV_AWS_157:A read replica in another zone is the standby here; drctl promotes it
  identifier                          = "${var.name}-ledger-b"
  replicate_source_db                 = aws_db_instance.ledger_a.identifier
  instance_class                      = "db.t4g.micro"
  storage_encrypted                   = true
  kms_key_id                          = aws_kms_key.demo.arn
  parameter_group_name                = aws_db_parameter_group.demo.name
  availability_zone                   = local.az[1]
  deletion_protection                 = true
  iam_database_authentication_enabled = true
  auto_minor_version_upgrade          = true
  copy_tags_to_snapshot               = true
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = aws_kms_key.demo.arn
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  skip_final_snapshot                 = true
  publicly_accessible                 = false
}

# ---- Route53: the service's record, which drctl points at the zone that survives ----

resource "aws_route53_zone" "demo" {
  #checkov:skip=CKV2_AWS_38:A demo zone; sign yours with DNSSEC
  #checkov:skip=CKV2_AWS_39:A demo zone; query logging costs more than the demo
  name = var.domain
}

resource "aws_route53_record" "pay" {
  #checkov:skip=CKV2_AWS_23:The demo service's addresses are examples (10.0.1.10 in az1, 10.0.2.10 in az2), not resources of this configuration
  zone_id = aws_route53_zone.demo.zone_id
  name    = "pay.${var.domain}"
  type    = "A"
  ttl     = 30
  records = ["10.0.1.10"]
  # drctl changes this record on failover (UPSERT): Terraform must not put it back.
  lifecycle {
    ignore_changes = [records]
  }
}

# ---- The controllers ----

module "drctl" {
  source = "../../modules/drctl"
  providers = {
    aws                = aws
    aws.page_primary   = aws.page_primary
    aws.page_secondary = aws.page_secondary
  }
  name                 = var.name
  vpc_id               = var.vpc_id
  subnet_ids           = var.subnet_ids
  topology_yaml        = local.drctl_yaml
  iam_policy_json      = local.policy_json
  status_page_domain   = "status.${var.domain}"
  status_page_regions  = [var.region, var.page_region]
  operator_cidrs       = var.operator_cidrs
  drctl_release_url    = var.drctl_release_url
  drctl_release_sha256 = var.drctl_release_sha256
  etcd_release_sha256  = var.etcd_release_sha256
}

output "drctl_yaml" {
  description = "The demo's topology: save it as drctl.yaml to run drctl from your machine."
  value       = local.drctl_yaml
}

output "controllers" {
  description = "The controllers' private addresses (port 8080)."
  value       = module.drctl.controller_addresses
}

output "status_page_endpoints" {
  description = "The exported status page, one website endpoint per region."
  value       = module.drctl.status_page_endpoints
}
