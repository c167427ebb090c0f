/// The 15 keypoints' 30 columns, in Kaggle's order.
public enum Keypoints {
    /// The 30 columns, in Kaggle's order; "left" is the subject's left (on the image's right).
    public static let columns: [String] = [
        "left_eye_center_x", "left_eye_center_y", "right_eye_center_x", "right_eye_center_y",
        "left_eye_inner_corner_x", "left_eye_inner_corner_y", "left_eye_outer_corner_x", "left_eye_outer_corner_y",
        "right_eye_inner_corner_x", "right_eye_inner_corner_y", "right_eye_outer_corner_x", "right_eye_outer_corner_y",
        "left_eyebrow_inner_end_x", "left_eyebrow_inner_end_y", "left_eyebrow_outer_end_x", "left_eyebrow_outer_end_y",
        "right_eyebrow_inner_end_x", "right_eyebrow_inner_end_y", "right_eyebrow_outer_end_x", "right_eyebrow_outer_end_y",
        "nose_tip_x", "nose_tip_y", "mouth_left_corner_x", "mouth_left_corner_y",
        "mouth_right_corner_x", "mouth_right_corner_y", "mouth_center_top_lip_x", "mouth_center_top_lip_y",
        "mouth_center_bottom_lip_x", "mouth_center_bottom_lip_y",
    ]

    public static let count = 30
    /// Image side (keypoints are scaled for the nets by KeypointScale, in FKPInference).
    public static let side = 96
    public static let imageSize = 96 * 96
}
