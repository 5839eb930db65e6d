resource "aws_security_group" "controller" {
  name        = "${var.name}-controllers"
  description = "drctl controllers and their etcd members"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "etcd_clients" {
  security_group_id            = aws_security_group.controller.id
  description                  = "etcd clients: the controllers"
  referenced_security_group_id = aws_security_group.controller.id
  ip_protocol                  = "tcp"
  from_port                    = 2379
  to_port                      = 2380
}

resource "aws_vpc_security_group_ingress_rule" "controllers" {
  security_group_id            = aws_security_group.controller.id
  description                  = "controller to controller: writes forwarded to the leader"
  referenced_security_group_id = aws_security_group.controller.id
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
}

resource "aws_vpc_security_group_ingress_rule" "operators" {
  for_each          = toset(var.operator_cidrs)
  security_group_id = aws_security_group.controller.id
  description       = "status page and operator API"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 8080
  to_port           = 8080
}

resource "aws_vpc_security_group_egress_rule" "aws_apis" {
  security_group_id = aws_security_group.controller.id
  description       = "HTTPS to AWS APIs, releases and the systems drctl checks"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "in_vpc" {
  security_group_id = aws_security_group.controller.id
  description       = "the estate inside the VPC (PostgreSQL, health checks) and the other members"
  cidr_ipv4         = data.aws_vpc.this.cidr_block
  ip_protocol       = "-1"
}
