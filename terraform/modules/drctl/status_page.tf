# The status page exported to a bucket in each of two regions, so
# customers can read it when the controllers' region is down. The
# controllers write it (`drctl status-page export`, then a sync) every
# minute. Both buckets answer as S3 websites; put your domain on a CDN
# with the two as an origin group (failover), since two regions cannot
# share one bucket name, which a plain Route53 alias to a website needs.

resource "aws_s3_bucket" "page_primary" {
  provider = aws.page_primary
  #checkov:skip=CKV2_AWS_6:It has one (below) that blocks ACLs and allows only the bucket policy that makes the page readable
  #checkov:skip=CKV_AWS_18:The page is public; an access log would hold its readers' addresses for nothing drctl uses (put a CDN with its own logs in front if you want them)
  #checkov:skip=CKV_AWS_144:The controllers write the page into both regions themselves; replication would copy an older page over a newer one
  #checkov:skip=CKV_AWS_145:Anonymous readers cannot read SSE-KMS objects; the page is public, so SSE-S3 it is
  #checkov:skip=CKV2_AWS_62:Nothing consumes events of the page's bucket
  bucket        = "${var.name}-status-${var.status_page_regions[0]}-${data.aws_caller_identity.current.account_id}"
  force_destroy = true
  tags          = local.tags
}

resource "aws_s3_bucket_versioning" "page_primary" {
  provider = aws.page_primary
  bucket   = aws_s3_bucket.page_primary.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "page_primary" {
  provider = aws.page_primary
  bucket   = aws_s3_bucket.page_primary.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "page_primary" {
  provider = aws.page_primary
  bucket   = aws_s3_bucket.page_primary.id
  rule {
    id     = "old-pages"
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

# Public read of the page's objects, nothing else: no listing, no ACLs.
resource "aws_s3_bucket_public_access_block" "page_primary" {
  provider = aws.page_primary
  #checkov:skip=CKV_AWS_54:The bucket policy below makes the page's objects public; that is the point of a status page
  #checkov:skip=CKV_AWS_56:The bucket policy below makes the page's objects public; that is the point of a status page
  bucket                  = aws_s3_bucket.page_primary.id
  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = false
  restrict_public_buckets = false
}

resource "aws_s3_bucket_policy" "page_primary" {
  #checkov:skip=CKV_AWS_70:Anyone may read the page's objects (GetObject only, no listing, writes denied without TLS): it is the public status page
  provider   = aws.page_primary
  bucket     = aws_s3_bucket.page_primary.id
  depends_on = [aws_s3_bucket_public_access_block.page_primary]
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "ReadThePage"
        Effect    = "Allow"
        Principal = "*"
        Action    = "s3:GetObject"
        Resource  = "${aws_s3_bucket.page_primary.arn}/*"
      },
      {
        Sid       = "TlsOnlyForWrites"
        Effect    = "Deny"
        Principal = "*"
        Action    = ["s3:PutObject", "s3:DeleteObject"]
        Resource  = "${aws_s3_bucket.page_primary.arn}/*"
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

resource "aws_s3_bucket_website_configuration" "page_primary" {
  provider = aws.page_primary
  bucket   = aws_s3_bucket.page_primary.id
  index_document {
    suffix = "index.html"
  }
}

resource "aws_s3_bucket" "page_secondary" {
  provider = aws.page_secondary
  #checkov:skip=CKV2_AWS_6:It has one (below) that blocks ACLs and allows only the bucket policy that makes the page readable
  #checkov:skip=CKV_AWS_18:The page is public; an access log would hold its readers' addresses for nothing drctl uses (put a CDN with its own logs in front if you want them)
  #checkov:skip=CKV_AWS_144:The controllers write the page into both regions themselves; replication would copy an older page over a newer one
  #checkov:skip=CKV_AWS_145:Anonymous readers cannot read SSE-KMS objects; the page is public, so SSE-S3 it is
  #checkov:skip=CKV2_AWS_62:Nothing consumes events of the page's bucket
  bucket        = "${var.name}-status-${var.status_page_regions[1]}-${data.aws_caller_identity.current.account_id}"
  force_destroy = true
  tags          = local.tags
}

resource "aws_s3_bucket_versioning" "page_secondary" {
  provider = aws.page_secondary
  bucket   = aws_s3_bucket.page_secondary.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "page_secondary" {
  provider = aws.page_secondary
  bucket   = aws_s3_bucket.page_secondary.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "page_secondary" {
  provider = aws.page_secondary
  bucket   = aws_s3_bucket.page_secondary.id
  rule {
    id     = "old-pages"
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

# Public read of the page's objects, nothing else: no listing, no ACLs.
resource "aws_s3_bucket_public_access_block" "page_secondary" {
  provider = aws.page_secondary
  #checkov:skip=CKV_AWS_54:The bucket policy below makes the page's objects public; that is the point of a status page
  #checkov:skip=CKV_AWS_56:The bucket policy below makes the page's objects public; that is the point of a status page
  bucket                  = aws_s3_bucket.page_secondary.id
  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = false
  restrict_public_buckets = false
}

resource "aws_s3_bucket_policy" "page_secondary" {
  #checkov:skip=CKV_AWS_70:Anyone may read the page's objects (GetObject only, no listing, writes denied without TLS): it is the public status page
  provider   = aws.page_secondary
  bucket     = aws_s3_bucket.page_secondary.id
  depends_on = [aws_s3_bucket_public_access_block.page_secondary]
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "ReadThePage"
        Effect    = "Allow"
        Principal = "*"
        Action    = "s3:GetObject"
        Resource  = "${aws_s3_bucket.page_secondary.arn}/*"
      },
      {
        Sid       = "TlsOnlyForWrites"
        Effect    = "Deny"
        Principal = "*"
        Action    = ["s3:PutObject", "s3:DeleteObject"]
        Resource  = "${aws_s3_bucket.page_secondary.arn}/*"
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

resource "aws_s3_bucket_website_configuration" "page_secondary" {
  provider = aws.page_secondary
  bucket   = aws_s3_bucket.page_secondary.id
  index_document {
    suffix = "index.html"
  }
}
