# One customer-managed key for everything this stack encrypts at rest:
# secrets, log groups, the ECR repository and the database.

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:This is a key policy: its "*" resource is this key alone, and the account-root statement is the standard delegation to IAM policies.
  #checkov:skip=CKV_AWS_111:Same: in a key policy "*" means this key; the logs service is limited to this account's log groups by encryption context.
  #checkov:skip=CKV_AWS_356:Same: a key policy cannot name its own key ARN before the key exists, "*" is the documented form.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsUse"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.aws_region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.aws_region}:${local.account_id}:log-group:*"]
    }
  }
}

resource "aws_kms_key" "dop" {
  description             = "${local.name}: secrets, logs, ECR and RDS"
  enable_key_rotation     = true
  deletion_window_in_days = 7
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "dop" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.dop.key_id
}
