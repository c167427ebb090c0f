#include <dlib/image_processing/frontal_face_detector.h>
#include <dlib/image_io.h>
#include <iostream>
#include <chrono>
using namespace dlib;
int main(int argc, char** argv) {
    int up = atoi(argv[1]);
    frontal_face_detector d = get_frontal_face_detector();
    if (std::string(argv[2]) == "--save") { serialize(argv[3]) << d; return 0; }
    std::cout << "file,x,y,w,score,pose\n";
    double total = 0;
    for (int i = 2; i < argc; i++) {
        array2d<unsigned char> img; load_image(img, argv[i]);
        double s = 1;
        auto t0 = std::chrono::steady_clock::now();
        if (up) { pyramid_up(img); s = 2; }
        std::vector<rect_detection> dets; d(img, dets, 0.0);
        total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::string n = argv[i]; n = n.substr(n.find_last_of('/') + 1);
        for (auto& r : dets) std::cout << n << "," << r.rect.left()/s << "," << r.rect.top()/s << "," << r.rect.width()/s << "," << r.detection_confidence << "," << r.weight_index << "\n";
    }
    std::cerr << "seconds " << total << "\n";
}
