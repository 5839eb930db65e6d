output "id" {
  description = "The bucket's name."
  value       = aws_s3_bucket.this.id
}

output "arn" {
  description = "The bucket's ARN."
  value       = aws_s3_bucket.this.arn
}

output "website_endpoint" {
  description = "The page's website endpoint in this region."
  value       = aws_s3_bucket_website_configuration.this.website_endpoint
}
