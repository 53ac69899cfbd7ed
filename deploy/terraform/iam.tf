# Two roles for the tasks:
#   execution role: what ECS itself does before dop starts (pull the image,
#     read the five secrets, write to the log groups), nothing more;
#   task role: what dop may call at run time. dop calls no AWS API, so it has
#     no permissions at all.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${var.aws_region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-ecs-execution"
  description        = "ECS pulls the dop image, reads its secrets and writes its logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  # GetAuthorizationToken has no resource-level permissions: "*" is the only
  # form IAM accepts for it. The token alone pulls nothing; the next
  # statement limits pulls to the one repository.
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPullDopImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.dop.arn]
  }

  statement {
    sid       = "WriteTaskLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for g in aws_cloudwatch_log_group.tasks : "${g.arn}:*"]
  }

  statement {
    sid       = "ReadDopSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for s in aws_secretsmanager_secret.dop : s.arn]
  }

  statement {
    sid       = "DecryptDopSecrets"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.dop.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.aws_region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-image-read-secrets-write-logs"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

resource "aws_iam_role" "task" {
  name               = "${local.name}-task"
  description        = "dop at run time: no AWS permissions"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}
