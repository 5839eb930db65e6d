resource "aws_iam_role" "controller" {
  name = "${var.name}-controller"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_instance_profile" "controller" {
  name = "${var.name}-controller"
  role = aws_iam_role.controller.name
}

# Exactly what `drctl iam-policy --for serve` prints for the topology.
resource "aws_iam_role_policy" "drctl" {
  name   = "drctl"
  role   = aws_iam_role.controller.id
  policy = var.iam_policy_json
}

# Besides drctl's own calls: publishing the exported page, shipping logs,
# the key that encrypts both.
resource "aws_iam_role_policy" "operate" {
  name = "operate"
  role = aws_iam_role.controller.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "PublishStatusPage"
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:ListBucket", "s3:DeleteObject"]
        Resource = flatten([for b in [module.page_primary.arn, module.page_secondary.arn] : [b, "${b}/*"]])
      },
      {
        Sid      = "ShipLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
        Resource = ["${aws_cloudwatch_log_group.controller.arn}:*"]
      },
      {
        Sid      = "UseTheKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [aws_kms_key.drctl.arn]
      },
    ]
  })
}

# Shell access without SSH keys or open ports (Session Manager).
resource "aws_iam_role_policy_attachment" "ssm" {
  role       = aws_iam_role.controller.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_kms_key" "drctl" {
  description         = "drctl: controller disks and logs"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "LogsEncrypt"
        Effect    = "Allow"
        Principal = { Service = "logs.${data.aws_region.current.name}.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:aws:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:/${var.name}/*" }
        }
      },
    ]
  })
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "controller" {
  name              = "/${var.name}/controllers"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.drctl.arn
  tags              = local.tags
}
