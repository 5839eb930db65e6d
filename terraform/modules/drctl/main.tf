# Three EC2 instances, one per availability zone, each running an etcd
# member and a drctl controller (docs/guide/ha-etcd.md: one leads on an etcd lease; the
# others serve the page and forward writes). EC2 rather than Fargate: etcd
# wants stable peer addresses and a disk that survives a restart with low
# fsync latency (EBS), which Fargate gives only through EFS; and putting a
# member and a controller together means losing a zone costs one of each,
# which the quorum (2 of 3) and the election both survive.

data "aws_region" "current" {}

data "aws_caller_identity" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_subnet" "zone" {
  count = 3
  id    = var.subnet_ids[count.index]
}

data "aws_ami" "al2023" {
  most_recent = true
  owners      = ["amazon"]
  filter {
    name   = "name"
    values = ["al2023-ami-2023.*-x86_64"]
  }
}

locals {
  # A fixed address per zone, so the etcd cluster can be named up front.
  addresses = [for s in data.aws_subnet.zone : cidrhost(s.cidr_block, 10)]
  endpoints = join(",", [for ip in local.addresses : "${ip}:2379"])
  peers     = join(",", [for i, ip in local.addresses : "m${i}=http://${ip}:2380"])
  page_url  = "https://${var.status_page_domain}"
  files = merge(
    { "drctl.yaml" = var.topology_yaml },
    { for dest, src in var.extra_files : dest => file(src) },
  )
  tags = merge({ "managed-by" = "terraform", "app" = "drctl" }, var.tags)
}

resource "aws_instance" "controller" {
  count                  = 3
  ami                    = data.aws_ami.al2023.id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_ids[count.index]
  private_ip             = local.addresses[count.index]
  vpc_security_group_ids = [aws_security_group.controller.id]
  iam_instance_profile   = aws_iam_instance_profile.controller.name
  monitoring             = true
  ebs_optimized          = true

  metadata_options {
    http_tokens   = "required"
    http_endpoint = "enabled"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 20
    encrypted   = true
    kms_key_id  = aws_kms_key.drctl.arn
  }

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    member           = "m${count.index}"
    address          = local.addresses[count.index]
    zone             = data.aws_subnet.zone[count.index].availability_zone
    peers            = local.peers
    endpoints        = local.endpoints
    etcd_version     = var.etcd_version
    etcd_sha256      = var.etcd_release_sha256
    drctl_url        = var.drctl_release_url
    drctl_sha256     = var.drctl_release_sha256
    files            = local.files
    page_url         = local.page_url
    page_buckets     = [module.page_primary.id, module.page_secondary.id]
    page_regions     = var.status_page_regions
    log_group        = aws_cloudwatch_log_group.controller.name
    region           = data.aws_region.current.name
  })
  user_data_replace_on_change = true

  tags = merge(local.tags, { Name = "${var.name}-${data.aws_subnet.zone[count.index].availability_zone}" })
}
