# One region's copy of the status page: an S3 website bucket whose objects
# anyone may read, nothing else public. The module instantiates it once
# per region (a provider each).

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV2_AWS_6:It has one (below) that blocks ACLs and allows only the bucket policy that makes the page readable
  #checkov:skip=CKV_AWS_18:The page is public; an access log would hold its readers' addresses for nothing drctl uses (put a CDN with its own logs in front if you want them)
  #checkov:skip=CKV_AWS_144:The controllers write the page into both regions themselves; replication would copy an older page over a newer one
  #checkov:skip=CKV_AWS_145:Anonymous readers cannot read SSE-KMS objects; the page is public, so SSE-S3 it is
  #checkov:skip=CKV2_AWS_62:Nothing consumes events of the page's bucket
  bucket        = var.bucket
  force_destroy = true
  tags          = var.tags
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id
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
resource "aws_s3_bucket_public_access_block" "this" {
  #checkov:skip=CKV_AWS_54:The bucket policy below makes the page's objects public; that is the point of a status page
  #checkov:skip=CKV_AWS_56:The bucket policy below makes the page's objects public; that is the point of a status page
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = false
  restrict_public_buckets = false
}

resource "aws_s3_bucket_policy" "this" {
  #checkov:skip=CKV_AWS_70:Anyone may read the page's objects (GetObject only, no listing, writes denied without TLS): it is the public status page
  bucket     = aws_s3_bucket.this.id
  depends_on = [aws_s3_bucket_public_access_block.this]
  policy     = jsonencode({
    Version   = "2012-10-17"
    Statement = [
      {
        Sid       = "ReadThePage"
        Effect    = "Allow"
        Principal = "*"
        Action    = "s3:GetObject"
        Resource  = "${aws_s3_bucket.this.arn}/*"
      },
      {
        Sid       = "TlsOnlyForWrites"
        Effect    = "Deny"
        Principal = "*"
        Action    = ["s3:PutObject", "s3:DeleteObject"]
        Resource  = "${aws_s3_bucket.this.arn}/*"
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

resource "aws_s3_bucket_website_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  index_document {
    suffix = "index.html"
  }
}
