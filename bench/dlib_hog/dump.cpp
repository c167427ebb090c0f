// Prints dlib's frontal face detector (HOG) as JSON: its 5 filter banks (31 planes of rows x cols), biases,
// window, cell size, padding and overlap test.
#include <dlib/image_processing/frontal_face_detector.h>
#include <cstdio>
using namespace dlib;
int main() {
    frontal_face_detector d = get_frontal_face_detector();
    const auto& s = d.get_scanner();
    printf("{\"cell_size\":%lu,\"padding\":%lu,\"window_width\":%lu,\"window_height\":%lu,\"max_levels\":%lu,",
           s.get_cell_size(), s.get_padding(), s.get_detection_window_width(), s.get_detection_window_height(), s.get_max_pyramid_levels());
    printf("\"min_layer\":[%lu,%lu],", s.get_min_pyramid_layer_width(), s.get_min_pyramid_layer_height());
    printf("\"iou\":%.17g,\"covered\":%.17g,\"num_dimensions\":%ld,\"filters\":[",
           d.get_overlap_tester().get_iou_thresh(), d.get_overlap_tester().get_percent_covered_thresh(), (long)s.get_num_dimensions());
    for (unsigned long i = 0; i < d.num_detectors(); i++) {
        const auto& w = d.get_w(i);
        auto fb = s.build_fhog_filterbank(w);
        printf("%s{\"bias\":%.17g,\"rows\":%ld,\"cols\":%ld,\"planes\":[", i ? "," : "", (double)w(s.get_num_dimensions()),
               fb.get_filters()[0].nr(), fb.get_filters()[0].nc());
        for (size_t p = 0; p < fb.get_filters().size(); p++) {
            const auto& f = fb.get_filters()[p];
            printf("%s[", p ? "," : "");
            for (long r = 0; r < f.nr(); r++) for (long c = 0; c < f.nc(); c++) printf("%s%.9g", (r || c) ? "," : "", f(r, c));
            printf("]");
        }
        printf("]}");
    }
    printf("]}\n");
}
