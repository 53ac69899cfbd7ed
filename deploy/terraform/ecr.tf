# ONE repository for the one image that every role runs. deploy.sh creates it
# first (terraform apply -target), pushes the image, then applies the rest.

resource "aws_ecr_repository" "dop" {
  name                 = local.name
  image_tag_mutability = "IMMUTABLE"
  # destroy.sh must be able to return the account to nothing, images included.
  force_delete = true

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.dop.arn
  }
}

resource "aws_ecr_lifecycle_policy" "dop" {
  repository = aws_ecr_repository.dop.name

  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the last ${var.ecr_keep_images} images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.ecr_keep_images
      }
      action = { type = "expire" }
    }]
  })
}
